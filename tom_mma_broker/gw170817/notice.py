"""The GW170817 LVK notice, in today's ``igwn.alerts`` Avro schema, marked as a replay.

The notice is what LVK sends on ``igwn.gwalert`` (schema from the PyPI package
``igwn-gwalert-schema``), filled with GW170817's published facts and its real BAYESTAR sky map
converted to multi-order. It is marked as a replay three ways, so that no consumer takes it for a
real alert: a *mock* superevent id (``MS170817a``; LVK's ``M`` prefix marks mock events), the
Kafka header ``x-tom-mma-replay: GW170817`` and the sky map's ``OBJECT``/``HISTORY`` cards.

Published facts used (Abbott et al. 2017, PRL 119, 161101; GWTC-1, PRX 9, 031040):
merger 2017-08-17T12:41:04.4 UTC (the sky map's ``DATE-OBS``: 12:41:04.444), H1/L1/V1, a binary
neutron star (both masses below 3 Msun, p_astro > 0.99), false-alarm rate below 1 per 8.0e4 yr.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Mapping
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import fastavro

from tom_mma_broker.schemas.photometry import iso_to_mjd, mjd_to_iso

__all__ = [
    "MOCK_SUPEREVENT_ID",
    "NOTICE_SCHEMA_ID",
    "MERGER_TIME",
    "MERGER_MJD",
    "FAR_HZ",
    "ALERT_TYPES",
    "igwn_alert_schema",
    "gw170817_skymap",
    "build_notice",
    "validate_notice",
    "notice_to_avro",
    "notice_from_avro",
]

logger = logging.getLogger(__name__)

MOCK_SUPEREVENT_ID = "MS170817a"
"""The superevent id of the replay: ``M`` marks a mock event, as in LVK's own mock alerts."""

NOTICE_SCHEMA_ID = "igwn.alerts.Alert"
"""The ``x-tom-mma-schema`` header of the notice: the Avro name of the igwn-gwalert-schema record."""

DATA_DIR = Path(__file__).resolve().parent / "data"
FLAT_SKYMAP = DATA_DIR / "GW170817-bayestar.flat.fits.gz"

MERGER_MJD = 57982.52852366271
"""Merger time (MJD UTC), the ``MJD-OBS`` of the BAYESTAR map."""

MERGER_TIME = mjd_to_iso(MERGER_MJD)
"""``2017-08-17T12:41:04.444Z``."""

_SECONDS_PER_YEAR = 365.25 * 86400.0
FAR_HZ = 1.0 / (8.0e4 * _SECONDS_PER_YEAR)
"""False-alarm rate in Hz: 1 per 8.0e4 years (GW170817 discovery paper, an upper bound)."""

ALERT_TYPES = ("EARLYWARNING", "PRELIMINARY", "INITIAL", "UPDATE", "RETRACTION")

# GraceDB's page of the original event (G298048); the sky map was made for G298107, its
# three-detector re-analysis
_GRACEDB_URL = "https://gracedb.ligo.org/events/G298048/view/"


@lru_cache(maxsize=1)
def igwn_alert_schema() -> dict[str, Any]:
    """The parsed ``igwn.alerts.Alert`` Avro schema of the installed ``igwn-gwalert-schema``."""
    text = resources.files("igwn_gwalert_schema").joinpath("igwn.alerts.Alert.avsc").read_text()
    return fastavro.parse_schema(json.loads(text))


@lru_cache(maxsize=4)
def gw170817_skymap(superevent_id: str = MOCK_SUPEREVENT_ID) -> bytes:
    """The real GW170817 BAYESTAR map as multi-order FITS bytes (about 170 KB), ``OBJECT`` set.

    Converted from the flat NSIDE=128 map shipped with the package (:mod:`.skymap`); the
    same call always gives the same bytes.
    """
    # astropy is imported on first use: building photometry messages does not need it
    from . import skymap as skymaps

    columns, header = skymaps.read_flat_skymap(FLAT_SKYMAP)
    table = skymaps.flat_to_multiorder(columns)
    return skymaps.multiorder_fits_bytes(
        table,
        header,
        OBJECT=(superevent_id, "Unique identifier for this event"),
        HISTORY=[
            "",
            "tom-mma: a REPLAY of GW170817 (G298048), NOT A REAL ALERT.",
            f"tom-mma: mock superevent {superevent_id}; the flat NSIDE=128 map",
            "tom-mma: made multi-order by tom_mma_broker.gw170817.skymap.",
        ],
    )


def build_notice(
    skymap: bytes | None,
    alert_type: str = "PRELIMINARY",
    time_created: str | None = None,
    superevent_id: str = MOCK_SUPEREVENT_ID,
) -> dict[str, Any]:
    """The GW170817 notice as an ``igwn.alerts.Alert`` record (a dict ready for Avro).

    Parameters
    ----------
    skymap : bytes or None
        Multi-order FITS bytes (:func:`gw170817_skymap`).
    alert_type : str
        ``PRELIMINARY``, ``INITIAL``, ``UPDATE``...; ``RETRACTION`` gives ``event = None``.
    time_created : str, optional
        ISO 8601 UTC; default 30 min after the merger.
    superevent_id : str
        Keep the ``M`` prefix: it marks the notice as a mock event.

    Examples
    --------
    >>> notice = build_notice(None)
    >>> notice["superevent_id"], notice["alert_type"], notice["time_created"]
    ('MS170817a', 'PRELIMINARY', '2017-08-17T13:11:04Z')
    >>> validate_notice(notice)
    """
    if alert_type not in ALERT_TYPES:
        raise ValueError(f"alert_type must be one of {', '.join(ALERT_TYPES)}, not {alert_type!r}")
    if time_created is None:
        time_created = mjd_to_iso(MERGER_MJD + 1800.0 / 86400.0)
    # LVK writes time_created to the second, with Z
    time_created = mjd_to_iso(iso_to_mjd(time_created))[:19] + "Z"
    event = None
    if alert_type != "RETRACTION":
        event = {
            "time": MERGER_TIME,
            "far": FAR_HZ,
            "significant": True,
            "instruments": ["H1", "L1", "V1"],
            "group": "CBC",
            # the first GW170817 trigger came from gstlal (H1 alone); the map is BAYESTAR's HLV one
            "pipeline": "gstlal",
            "search": "AllSky",
            "classification": {"BNS": 1.0, "NSBH": 0.0, "BBH": 0.0, "Terrestrial": 0.0},
            "properties": {"HasNS": 1.0, "HasRemnant": 1.0, "HasMassGap": 0.0},
            "mchirp_source": None,
            "duration": None,
            "central_frequency": None,
            "skymap": skymap,
        }
    return {
        "alert_type": alert_type,
        "time_created": time_created,
        "superevent_id": superevent_id,
        "event": event,
        "external_coinc": None,
        "urls": {"gracedb": _GRACEDB_URL},
    }


def validate_notice(notice: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` (with fastavro's reason) unless ``notice`` fits the igwn.alerts schema."""
    from fastavro.validation import ValidationError, validate

    try:
        validate(dict(notice), igwn_alert_schema(), raise_errors=True)
    except ValidationError as exc:
        raise ValueError(f"not an igwn.alerts.Alert: {exc}") from exc


def notice_to_avro(notice: Mapping[str, Any]) -> bytes:
    """Avro object-container bytes of one notice, as hop's ``AvroBlob`` writes them."""
    buffer = io.BytesIO()
    fastavro.writer(buffer, igwn_alert_schema(), [dict(notice)])
    return buffer.getvalue()


def notice_from_avro(data: bytes) -> dict[str, Any]:
    """The one record of Avro object-container bytes."""
    records = list(fastavro.reader(io.BytesIO(data)))
    if len(records) != 1:
        raise ValueError(f"expected one Avro record, found {len(records)}")
    return records[0]
