"""A demo-like TOM for the page tests: a GW event with candidates, derived alerts, a request, the archive.

Filled through the services the stream calls (the LVK handler, ``ingest_derived_alert``, the archive's
``Ingestor``), not by writing rows, so the pages show what a demo replay leaves behind; without Kafka, so that
it takes a second. One candidate is named ``<script>alert(1)</script>``: every page must show it escaped.
"""

from __future__ import annotations

from pathlib import Path

from django.test import override_settings
from hop.models import AvroBlob, JSONBlob
from tom_targets.models import Target

from tests.test_derived_factories import candidate, make_alert
from tom_mma.derived import ingest_derived_alert
from tom_mma.gw.observations import link_observation
from tom_mma.handlers.gcn import fermi_gbm_handler, icecube_track_handler
from tom_mma.handlers.lvk import igwn_gwalert_handler
from tom_mma.models import GWEvent, ObservationTrigger

DATA = Path(__file__).parent / "data" / "lvk"
GCN = Path(__file__).parent / "data" / "gcn"
EVENT = "MS181101ab"
BEST = (194.30419921874997, -17.856895095545468)
XSS = "<script>alert(1)</script>"
#: a magnitude with the nine decimals of a float, and its error: shown as 22.38 (0.05 has two decimals)
MAG, MAG_ERR = 22.383880105, 0.05
SIMULATED = ["tom_mma.facilities.simulated.SimulatedFacility"]


def _json(path: Path) -> dict:
    import json

    return json.loads(path.read_text())


def fill(capture_on_commit) -> dict:
    """Fill the database; ``capture_on_commit`` is pytest-django's ``django_capture_on_commit_callbacks``."""
    from tom_mma import receivers

    receivers.connect()
    with override_settings(
        TOM_MMA={"ACCEPT_MOCK_EVENTS": True, "OBSERVATION_SCORE_ONLY_WITHOUT_SKYMAP": True},
        TOM_FACILITY_CLASSES=SIMULATED,
    ):
        with capture_on_commit(execute=True):
            Target.objects.create(name="AT-far", type="SIDEREAL", ra=10.0, dec=60.0, permissions="PUBLIC")
            igwn_gwalert_handler(AvroBlob.load_file(DATA / "MS181101ab-preliminary.avro"))
            # a GRB and a neutrino (the GCN samples: not near the GW event in time, so not linked to it)
            fermi_gbm_handler(JSONBlob(content=_json(GCN / "fermi" / "gbm" / "trigger.final.example.json")), None)
            icecube = GCN / "icecube" / "single_neutrino_alerts.gold_bronze_track_alerts.example.json"
            icecube_track_handler(JSONBlob(content=_json(icecube)), None)
        points = [
            {"mjd": 58423.10, "band": "g", "magnitude": MAG, "magnitude_error": MAG_ERR, "upper_limit": False,
             "telescope": "ZTF"},
            {"mjd": 58424.10, "band": "r", "magnitude": 21.9071234567, "magnitude_error": 0.003,
             "upper_limit": False, "telescope": "ZTF"},
        ]  # fmt: skip
        alerts = [
            make_alert(candidate=candidate("AT-best", *BEST), gw_event=EVENT, photometry=points[:1],
                       latest_point_mjd=58423.10, kilonova_score=0.42),
            make_alert(candidate=candidate("AT-best", *BEST), gw_event=EVENT, photometry=points,
                       latest_point_mjd=58424.10, kilonova_score=0.91),
            make_alert(candidate=candidate(XSS, BEST[0] + 0.3, BEST[1] + 0.3), gw_event=EVENT,
                       photometry=points[:1], latest_point_mjd=58423.2, kilonova_score=0.2),
        ]  # fmt: skip
        for alert in alerts:
            with capture_on_commit(execute=True):
                ingest_derived_alert(alert)
    best = Target.objects.get(name="AT-best")
    event = GWEvent.objects.get(superevent_id=EVENT)
    trigger = ObservationTrigger.objects.filter(target=best).first()
    record = trigger.observation_records.first() if trigger else None
    if record is not None:
        link_observation(event, record)
    from tom_mma.models import TransientEvent

    return {
        "transients": list(TransientEvent.objects.all()),
        "event": event,
        "best": best,
        "xss": Target.objects.get(name=XSS),
        "trigger": trigger,
        "record": record,
    }
