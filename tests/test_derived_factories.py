"""Builders of derived alerts for the derived-alert tests (and a test that they build valid alerts).

The photometry is real: AT2017gfo (the kilonova of GW170817) in DECam i/z and Swift/UVOT U, from
Cowperthwaite et al. 2017 via the Open Kilonova Catalog (``astrocatalogs/kne-internal``, MIT licence).
"""

from __future__ import annotations

import uuid

from tom_mma.schemas.derived_alert import SCHEMA_ID, DerivedAlert

AT2017GFO_RA = 197.450374
AT2017GFO_DEC = -23.381483

AT2017GFO_POINTS = [
    {"mjd": 57983.003059500006, "band": "i", "magnitude": 17.480130787100002, "magnitude_error": 0.02529849344005,
     "upper_limit": False, "telescope": "DECam"},
    {"mjd": 57983.0037414, "band": "z", "magnitude": 17.5902045028, "magnitude_error": 0.02912213500222,
     "upper_limit": False, "telescope": "DECam"},
    {"mjd": 57983.16719907407, "band": "U", "magnitude": 18.2024703, "magnitude_error": 0.08934450000000001,
     "upper_limit": False, "telescope": "Swift"},
]  # fmt: skip


def alert_dict(**overrides) -> dict:
    """A valid v1 classification as a dict; keyword arguments replace top-level fields."""
    data = {
        "schema": SCHEMA_ID,
        "alert_id": str(uuid.uuid4()),
        "kind": "classification",
        "created": "2017-08-18T06:00:00Z",
        "candidate": {"name": "SSS17a", "aliases": ["AT2017gfo"], "ra": AT2017GFO_RA, "dec": AT2017GFO_DEC},
        "latest_point_mjd": 57983.16719907407,
        "kilonova_score": 0.91,
        "model_version": "kn-test-1.0.0",
        "features": {"rise_time": 0.4, "colour_gr": None},
        "source_message_ids": [str(uuid.uuid4()), str(uuid.uuid4())],
        "gw_event": None,
        "photometry": [dict(p) for p in AT2017GFO_POINTS],
        "retracts": None,
        "reason": None,
    }
    data.update(overrides)
    return data


def make_alert(**overrides) -> DerivedAlert:
    """A valid v1 classification; keyword arguments replace top-level fields."""
    return DerivedAlert.from_dict(alert_dict(**overrides))


def candidate(name: str, ra: float, dec: float, aliases=()) -> dict:
    return {"name": name, "aliases": list(aliases), "ra": ra, "dec": dec}


def retraction_dict(retracted: DerivedAlert, reason: str = "bogus: satellite streak") -> dict:
    return alert_dict(
        kind="retraction",
        candidate=retracted.candidate.to_dict(),
        kilonova_score=retracted.kilonova_score,
        retracts=retracted.alert_id,
        reason=reason,
    )


def test_factories_build_valid_alerts():
    alert = make_alert()
    assert alert.candidate.name == "SSS17a"
    assert len(alert.photometry) == 3
    assert DerivedAlert.from_dict(retraction_dict(alert)).retracts == alert.alert_id
