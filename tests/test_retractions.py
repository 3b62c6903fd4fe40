"""A retracted GW event: the broker follows every derived alert that cited it with a retraction message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hop.io import Metadata
from hop.models import AvroBlob

from tom_mma.handlers.lvk import igwn_gwalert_handler
from tom_mma.schemas.derived_alert import DerivedAlert
from tom_mma_broker.classification import score_candidate
from tom_mma_broker.models import Candidate, CandidatePoint, OutboxMessage
from tom_mma_broker.outbox import queue_retractions

LVK = Path(__file__).parent / "data" / "lvk"
OKC = Path(__file__).parent / "data" / "classifier" / "GW170817-cowperthwaite.json"

pytestmark = pytest.mark.django_db


def deliver(name: str, capture) -> None:
    metadata = Metadata(topic="igwn.gwalert", partition=0, offset=0, timestamp=0, key=None, headers=[], _raw=None)
    with capture(execute=True):
        igwn_gwalert_handler(AvroBlob.load_file(LVK / f"MS181101ab-{name}.avro"), metadata)


def candidate_citing(superevent_id: str) -> Candidate:
    """A candidate with real AT2017gfo DECam points (scored high), following ``superevent_id``."""
    candidate = Candidate.objects.create(name="AT2017gfo", ra=197.450374, dec=-23.381495, gw_event=superevent_id)
    photometry = json.loads(OKC.read_text())["GW170817"]["photometry"]
    decam = [p for p in photometry if p.get("instrument") == "DECam" and p.get("band") in ("g", "r", "i")][:8]
    for i, p in enumerate(decam):
        CandidatePoint.objects.create(
            candidate=candidate,
            point_id=f"p{i}",
            mjd=float(p["time"]),
            band=p["band"],
            magnitude=float(p["magnitude"]),
            magnitude_error=float(p["e_magnitude"]),
        )
    return candidate


def test_retraction_of_a_cited_event_queues_one_retraction_per_derived_alert(
    settings, django_capture_on_commit_callbacks
):
    settings.TOM_MMA = {"ACCEPT_MOCK_EVENTS": True}
    settings.TOM_MMA_BROKER = {**settings.TOM_MMA_BROKER, "PUBLISH_ENABLED": True, "PUBLISH_FLOOR": 0.1}
    candidate = candidate_citing("MS181101ab")
    classification = score_candidate(candidate.pk)
    assert classification is not None and classification.score >= 0.1
    [original] = OutboxMessage.objects.filter(kind="classification")

    deliver("preliminary", django_capture_on_commit_callbacks)
    assert not OutboxMessage.objects.filter(kind="retraction").exists()
    deliver("retraction", django_capture_on_commit_callbacks)

    [retraction] = OutboxMessage.objects.filter(kind="retraction")
    alert = DerivedAlert.from_json(bytes(retraction.payload))
    assert alert.is_retraction and alert.retracts == str(original.alert_id)
    assert "MS181101ab" in alert.reason and alert.candidate.name == "AT2017gfo"
    # idempotent: a second retraction notice (a replay) queues nothing more
    assert queue_retractions("MS181101ab", "again") == 0
    deliver("retraction", django_capture_on_commit_callbacks)
    assert OutboxMessage.objects.filter(kind="retraction").count() == 1


def test_retraction_of_an_event_never_seen_live_still_retracts_what_cited_it(
    settings, django_capture_on_commit_callbacks
):
    # the derived alert cited the event (from another source) before this TOM got any notice of it: its
    # retraction is the first notice here, and the alert must still be retracted
    settings.TOM_MMA = {"ACCEPT_MOCK_EVENTS": True}
    settings.TOM_MMA_BROKER = {**settings.TOM_MMA_BROKER, "PUBLISH_ENABLED": True, "PUBLISH_FLOOR": 0.1}
    candidate = candidate_citing("MS181101ab")
    score_candidate(candidate.pk)
    [original] = OutboxMessage.objects.filter(kind="classification")
    deliver("retraction", django_capture_on_commit_callbacks)  # never live here
    [retraction] = OutboxMessage.objects.filter(kind="retraction")
    assert DerivedAlert.from_json(bytes(retraction.payload)).retracts == str(original.alert_id)
    deliver("preliminary", django_capture_on_commit_callbacks)  # late: the event stays retracted
    assert OutboxMessage.objects.filter(kind="retraction").count() == 1


def test_an_alert_citing_an_event_already_retracted_is_followed_by_its_retraction(
    settings, django_capture_on_commit_callbacks
):
    # the retraction came first and nothing cited the event yet; a derived alert citing it is queued after
    # that: its retraction is queued with it, and later notices of the (still retracted) event add nothing
    settings.TOM_MMA = {"ACCEPT_MOCK_EVENTS": True}
    settings.TOM_MMA_BROKER = {**settings.TOM_MMA_BROKER, "PUBLISH_ENABLED": True, "PUBLISH_FLOOR": 0.1}
    deliver("retraction", django_capture_on_commit_callbacks)
    assert not OutboxMessage.objects.exists()
    candidate = candidate_citing("MS181101ab")
    score_candidate(candidate.pk)
    [original] = OutboxMessage.objects.filter(kind="classification")
    [retraction] = OutboxMessage.objects.filter(kind="retraction")
    assert DerivedAlert.from_json(bytes(retraction.payload)).retracts == str(original.alert_id)
    deliver("preliminary", django_capture_on_commit_callbacks)
    deliver("initial", django_capture_on_commit_callbacks)
    assert OutboxMessage.objects.filter(kind="retraction").count() == 1  # idempotent


def test_an_alert_citing_an_active_event_is_not_retracted(settings, django_capture_on_commit_callbacks):
    settings.TOM_MMA = {"ACCEPT_MOCK_EVENTS": True}
    settings.TOM_MMA_BROKER = {**settings.TOM_MMA_BROKER, "PUBLISH_ENABLED": True, "PUBLISH_FLOOR": 0.1}
    deliver("preliminary", django_capture_on_commit_callbacks)
    score_candidate(candidate_citing("MS181101ab").pk)
    assert OutboxMessage.objects.filter(kind="classification").count() == 1
    assert not OutboxMessage.objects.filter(kind="retraction").exists()
