"""The default observation rule requires the candidate inside the GW event's credible region: without an event
or its sky map it waits, and the sky map's arrival makes the request (once per candidate and rule)."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.test import override_settings
from tom_observations.models import ObservationRecord

from tests.test_derived_factories import alert_dict, candidate
from tom_mma.handlers.derived import derived_alert_handler
from tom_mma.models import ObservationTrigger

pytestmark = pytest.mark.django_db

LVK = Path(__file__).parent / "data" / "lvk"
# the MS181101ab map's most probable position (LVK user guide): inside its 90% region
INSIDE = candidate("ZTF18inside", 194.30419921874997, -17.856895095545468)
OUTSIDE = candidate("ZTF18outside", 14.3, 17.9)  # the opposite side of the sky


@pytest.fixture(autouse=True)
def tom(settings):
    settings.TOM_FACILITY_CLASSES = ["tom_mma.facilities.simulated.SimulatedFacility"]
    settings.TOM_MMA = {"ACCEPT_MOCK_EVENTS": True}


def deliver_notice(name: str, capture) -> None:
    """Ingest a real LVK notice of MS181101ab, running what it queues on commit (the signals among them)."""
    from tom_mma.gw.events import ingest_notice
    from tom_mma.gw.notices import parse_json

    with capture(execute=True):
        ingest_notice(parse_json((LVK / f"MS181101ab-{name}.json").read_bytes()))


def test_no_gw_event_requests_nothing_by_default(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        result = derived_alert_handler(alert_dict(kilonova_score=0.99), None)
    assert result.created and result.triggers == ()
    assert ObservationTrigger.objects.count() == ObservationRecord.objects.count() == 0


def test_unknown_sky_map_requests_nothing_by_default(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        result = derived_alert_handler(alert_dict(kilonova_score=0.99, gw_event="MS181101ab", candidate=INSIDE), None)
    assert result.created and result.triggers == ()
    assert ObservationTrigger.objects.count() == ObservationRecord.objects.count() == 0


def test_the_setting_lets_the_score_decide_without_an_event(settings, django_capture_on_commit_callbacks):
    settings.TOM_MMA = {"OBSERVATION_SCORE_ONLY_WITHOUT_SKYMAP": True}
    with django_capture_on_commit_callbacks(execute=True):
        derived_alert_handler(alert_dict(kilonova_score=0.99), None)
    assert ObservationTrigger.objects.get().details["region"] == "no event"
    assert ObservationRecord.objects.count() == 1


def test_the_sky_map_arriving_later_makes_the_request_once(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        # both alerts arrive before the event is known: nothing yet
        derived_alert_handler(alert_dict(kilonova_score=0.97, gw_event="MS181101ab", candidate=INSIDE), None)
        derived_alert_handler(alert_dict(kilonova_score=0.97, gw_event="MS181101ab", candidate=OUTSIDE), None)
    assert ObservationTrigger.objects.count() == 0

    deliver_notice("preliminary", django_capture_on_commit_callbacks)  # the sky map arrives
    trigger = ObservationTrigger.objects.get()
    assert trigger.target.name == "ZTF18inside" and trigger.status == "submitted"
    assert trigger.details["region"] == "inside" and trigger.details["credible_level"] < 0.9
    [record] = ObservationRecord.objects.all()
    assert record.target == trigger.target

    # the same notice again, and a later sky map of the event: the request is never made again
    deliver_notice("preliminary", django_capture_on_commit_callbacks)
    from tom_mma.rules import evaluate_rules_for_event

    with django_capture_on_commit_callbacks(execute=True):
        assert evaluate_rules_for_event("MS181101ab") == []
    assert ObservationTrigger.objects.count() == ObservationRecord.objects.count() == 1


@override_settings(TOM_MMA={"ACCEPT_MOCK_EVENTS": True, "OBSERVATION_SCORE_THRESHOLD": 0.99})
def test_the_sky_map_does_not_lift_the_score_threshold(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        derived_alert_handler(alert_dict(kilonova_score=0.97, gw_event="MS181101ab", candidate=INSIDE), None)
    deliver_notice("preliminary", django_capture_on_commit_callbacks)
    assert ObservationTrigger.objects.count() == 0


def test_a_retracted_alert_is_not_evaluated_when_the_sky_map_arrives(django_capture_on_commit_callbacks):
    from tests.test_derived_factories import retraction_dict
    from tom_mma.schemas.derived_alert import DerivedAlert

    original = DerivedAlert.from_dict(alert_dict(kilonova_score=0.97, gw_event="MS181101ab", candidate=INSIDE))
    with django_capture_on_commit_callbacks(execute=True):
        derived_alert_handler(original.to_dict(), None)
        derived_alert_handler(retraction_dict(original), None)
    deliver_notice("preliminary", django_capture_on_commit_callbacks)
    assert ObservationTrigger.objects.count() == 0


def test_a_request_made_by_a_rule_carries_the_facility_status_at_once(settings, django_capture_on_commit_callbacks):
    # the TOM's own form leaves the status blank until updatestatus; a rule's request says PENDING at once
    settings.TOM_MMA = {"OBSERVATION_SCORE_ONLY_WITHOUT_SKYMAP": True}
    with django_capture_on_commit_callbacks(execute=True):
        derived_alert_handler(alert_dict(kilonova_score=0.99), None)
    assert ObservationRecord.objects.get().status == "PENDING"
