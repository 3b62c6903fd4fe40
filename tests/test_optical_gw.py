"""Optical candidates placed in the GW sky, and their photometry handed to the broker's classifier.

The event is the real LVK mock superevent MS181101ab (its preliminary notice and BAYESTAR sky map); the
alert is a real ZTF packet moved onto the event's most probable position and into the days after the merger.
"""

from __future__ import annotations

import copy

import pytest
from hop.models import AvroBlob

from tests import optical_samples as s
from tests.lvk_samples import DATA
from tom_mma import receivers, signals
from tom_mma.handlers.lvk import igwn_gwalert_handler
from tom_mma.handlers.optical import ztf_handler
from tom_mma.models import EventCandidate, GWEvent
from tom_mma_broker.models import Candidate, CandidatePoint, Classification

pytestmark = pytest.mark.django_db

BEST = (194.30419921874997, -17.856895095545468)  # the most probable position of MS181101ab
JD_MJD = 2400000.5


@pytest.fixture(autouse=True)
def gw_setup(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.TOM_MMA = {"ACCEPT_MOCK_EVENTS": True, "OPTICAL_CUTOUTS_KEPT": 0}
    receivers.connect()
    from tom_mma_broker import receivers as broker_receivers

    broker_receivers.connect()


@pytest.fixture
def event(django_capture_on_commit_callbacks) -> GWEvent:
    with django_capture_on_commit_callbacks(execute=True):
        igwn_gwalert_handler(AvroBlob.load_file(DATA / "MS181101ab-preliminary.avro"), None)
    return GWEvent.objects.get()


def ztf_alert_at(ra: float, dec: float, jd: float, name: str) -> dict:
    (record,), _ = s.records(s.ZTF_33)
    record = copy.deepcopy(record)
    shift = jd - record["candidate"]["jd"]
    record["objectId"] = name
    record["candidate"] = {**record["candidate"], "ra": ra, "dec": dec, "jd": jd}
    record["prv_candidates"] = [{**p, "jd": p["jd"] + shift} for p in record["prv_candidates"]]
    return record


def deliver(record, capture):
    with capture(execute=True):
        (result,) = ztf_handler(AvroBlob(content=record), None)
    return result


def test_a_candidate_inside_the_region_and_window_gets_its_place_and_reaches_the_classifier(
    event, django_capture_on_commit_callbacks
):
    seen = []
    on_points = lambda sender, gw_event, placements, **kw: seen.append((gw_event, placements))  # noqa: E731
    signals.optical_photometry_added.connect(on_points)
    try:
        merger_jd = event.event_time.timestamp() / 86400.0 + 2440587.5
        result = deliver(ztf_alert_at(*BEST, merger_jd + 1.0, "ZTF18gwinside"), django_capture_on_commit_callbacks)
    finally:
        signals.optical_photometry_added.disconnect(on_points)
    (placement,) = result.placements
    candidate = EventCandidate.objects.get(event=event, target=result.target)
    assert placement.superevent_id == event.superevent_id
    assert placement.credible_level == pytest.approx(candidate.credible_level) and placement.credible_level < 0.9
    assert placement.days_since_merger == pytest.approx(1.0, abs=1e-6)
    assert result.gw_event == event.superevent_id and seen[0][0] == event.superevent_id
    # the broker side: one candidate with the new points, citing the event, classified
    broker_candidate = Candidate.objects.get()
    assert broker_candidate.name == result.target.name and broker_candidate.gw_event == event.superevent_id
    assert CandidatePoint.objects.count() == result.photometry_added
    assert Classification.objects.filter(candidate=broker_candidate).exists()


def test_outside_the_window_or_the_region_the_candidate_is_kept_but_quiet(event, django_capture_on_commit_callbacks):
    merger_jd = event.event_time.timestamp() / 86400.0 + 2440587.5
    late = deliver(ztf_alert_at(*BEST, merger_jd + 60.0, "ZTF18gwlate"), django_capture_on_commit_callbacks)
    far = deliver(ztf_alert_at(10.0, 60.0, merger_jd + 1.0, "ZTF18gwfar"), django_capture_on_commit_callbacks)
    assert late.placements and late.gw_event is None
    assert far.placements[0].credible_level > 0.9 and far.gw_event is None
    assert set(Candidate.objects.values_list("gw_event", flat=True)) == {""}


def test_no_active_event_no_placement(django_capture_on_commit_callbacks):
    result = deliver(ztf_alert_at(*BEST, 2458424.5, "ZTF18nogw"), django_capture_on_commit_callbacks)
    assert result.placements == () and result.gw_event is None
