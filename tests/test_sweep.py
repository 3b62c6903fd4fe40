"""The sweep (``tom_mma.tasks.sweep``): what a lost send left behind is found in the database and sent again."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db.models.signals import post_save
from django.test import override_settings
from django.utils import timezone
from tom_observations.models import ObservationRecord
from tom_targets.models import Target

from tests.test_derived_factories import make_alert
from tom_mma import receivers, signals
from tom_mma.derived import ingest_derived_alert
from tom_mma.gw.events import ingest_notice
from tom_mma.gw.notices import notice_from_message
from tom_mma.models import EventCandidate, GWEvent, ObservationTrigger
from tom_mma.tasks import sweep

pytestmark = pytest.mark.django_db

SIMULATED = ["tom_mma.facilities.simulated.SimulatedFacility"]


def _lost(signal):
    """Disconnect every receiver of ``signal`` (as if each send were lost with the Celery broker)."""
    saved = list(signal.receivers)
    signal.receivers.clear()
    signal.sender_receivers_cache.clear()
    return saved


def _restore(signal, saved):
    signal.receivers[:] = saved
    signal.sender_receivers_cache.clear()


def test_a_trigger_whose_task_was_lost_is_sent_again_and_a_lost_worker_is_flagged(django_capture_on_commit_callbacks):
    saved = _lost(signals.observation_trigger_claimed)
    try:
        with override_settings(TOM_FACILITY_CLASSES=SIMULATED, TOM_MMA={"OBSERVATION_SCORE_ONLY_WITHOUT_SKYMAP": True}):
            with django_capture_on_commit_callbacks(execute=True):
                ingest_derived_alert(make_alert())
            trigger = ObservationTrigger.objects.get()
            assert trigger.status == "pending" and not ObservationRecord.objects.exists()  # its task was lost
            assert sweep()["triggers"] == 0  # too recent: its own task may still come
            ObservationTrigger.objects.update(modified=timezone.now() - dt.timedelta(hours=1))
            assert sweep()["triggers"] == 1  # eager here: submitted at once
            assert ObservationTrigger.objects.get().status == "submitted"
            assert ObservationRecord.objects.count() == 1
            assert sweep()["triggers"] == 0  # nothing twice
    finally:
        _restore(signals.observation_trigger_claimed, saved)
    # a trigger left 'submitting' by a worker that died mid-request: never sent twice, flagged for a person
    ObservationTrigger.objects.update(status="submitting", modified=timezone.now() - dt.timedelta(hours=2))
    sweep()
    flagged = ObservationTrigger.objects.get()
    assert flagged.status == "failed" and "interrupted while submitting" in flagged.error


def test_an_event_whose_ranking_was_lost_is_ranked_by_the_sweep(django_capture_on_commit_callbacks, settings):
    from hop.models import AvroBlob

    from tests.lvk_samples import avro_record

    settings.TOM_MMA = {"ACCEPT_MOCK_EVENTS": True}
    receivers.connect()
    post_save.disconnect(receivers.target_saved, sender=Target, dispatch_uid="tom_mma.receivers.target_saved")
    saved = _lost(signals.gw_skymap_updated)
    try:
        target = Target.objects.create(name="at-peak", type="SIDEREAL", ra=194.3, dec=-17.86)
        with django_capture_on_commit_callbacks(execute=True):
            ingest_notice(notice_from_message(AvroBlob(content=avro_record("preliminary")), "avro"))
    finally:
        _restore(signals.gw_skymap_updated, saved)
        receivers.connect()
    event = GWEvent.objects.get()
    assert event.skymap_id and event.ranked_skymap_id is None and not EventCandidate.objects.exists()
    GWEvent.objects.update(modified=timezone.now() - dt.timedelta(hours=1))
    assert sweep()["rankings"] == 1
    event.refresh_from_db()
    assert event.ranked_skymap_id == event.skymap_id and event.rules_skymap_id == event.skymap_id
    assert EventCandidate.objects.get().target_id == target.pk
    assert sweep() == {"triggers": 0, "rankings": 0, "rule_evaluations": 0}
