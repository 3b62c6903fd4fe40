"""The simulated facility: the whole TOM facility interface, state over time kept in the database, cancel."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import override_settings
from django.urls import include, path, reverse
from django.utils import timezone
from tom_observations.facility import BaseRoboticObservationFacility, get_service_class
from tom_observations.models import ObservationRecord
from tom_targets.models import Target

from tom_mma.facilities.simulated import SimulatedFacility, SimulatedObservationForm, SimulatedTemplateForm
from tom_mma.models import SimulatedObservation

pytestmark = pytest.mark.django_db

# The example TOM's URLs plus tom_alerts' (whose navigation-bar link every page renders; tom_mma.E041)
urlpatterns = [path("", include("tom_common.urls")), path("alerts/", include("tom_alerts.urls", namespace="alerts"))]

FACILITY_SETTINGS = {"SIMULATED": {"SCHEDULE_AFTER_SECONDS": 60, "COMPLETE_AFTER_SECONDS": 600}}


@pytest.fixture(autouse=True)
def simulated_settings():
    with override_settings(
        TOM_FACILITY_CLASSES=["tom_mma.facilities.simulated.SimulatedFacility"], FACILITIES=FACILITY_SETTINGS
    ):
        yield


@pytest.fixture
def target():
    return Target.objects.create(name="AT2017gfo", type=Target.SIDEREAL, ra=197.450374, dec=-23.381483)


def payload(target, **params):
    return {"target_id": target.pk, "params": {"band": "r", "exposure_time": 300.0, "exposure_count": 1, **params}}


def submit(target) -> ObservationRecord:
    facility = SimulatedFacility()
    (observation_id,) = facility.submit_observation(payload(target))
    return ObservationRecord.objects.create(
        target=target, facility=facility.name, parameters=payload(target)["params"], observation_id=observation_id
    )


def age(observation_id: str, seconds: float) -> None:
    """Let ``seconds`` pass for a request: move its stored times into the past."""
    shift = timedelta(seconds=seconds)
    request = SimulatedObservation.objects.get(observation_id=observation_id)
    for name in ("submitted", "scheduled_at", "completed_at", "canceled_at"):
        if getattr(request, name) is not None:
            setattr(request, name, getattr(request, name) - shift)
    request.save()


def test_it_is_a_complete_robotic_facility():
    facility = get_service_class("Simulated")()  # abstract methods left out would fail here
    assert isinstance(facility, SimulatedFacility) and isinstance(facility, BaseRoboticObservationFacility)
    assert facility.get_form("IMAGING") is SimulatedObservationForm
    assert facility.get_template_form("IMAGING") is SimulatedTemplateForm
    assert list(facility.get_form_classes_for_display()) == ["IMAGING"]
    assert facility.get_terminal_observing_states() == ["COMPLETED", "CANCELED"]
    assert facility.get_failed_observing_states() == ["CANCELED"]
    sites = facility.get_observing_sites()
    assert {"sitecode", "latitude", "longitude", "elevation"} <= set(next(iter(sites.values())))
    assert facility.get_facility_weather_urls()["sites"][0]["code"] == "sim"
    assert facility.get_facility_status()["sites"][0]["telescopes"][0]["status"] == "AVAILABLE"
    assert facility.data_products("anything") == []
    assert facility.get_observation_url("sim-x") == ""


def test_validate(target):
    facility = SimulatedFacility()
    assert facility.validate_observation(payload(target)) == {"errors": []}
    errors = facility.validate_observation(payload(target, band="Q", exposure_time=0))["errors"]
    assert errors == ["unknown band 'Q'", "exposure_time must be a positive number of seconds"]
    assert facility.validate_observation({"target_id": 99999, "params": payload(target)["params"]})["errors"] == [
        "no target with id 99999"
    ]
    with override_settings(FACILITIES={"SIMULATED": {"DEC_LIMITS": [-10, 90]}}):
        (error,) = facility.validate_observation(payload(target))["errors"]
    assert "outside [-10, 90]" in error
    with pytest.raises(ValueError, match="rejected the request: unknown band"):
        facility.submit_observation(payload(target, band="Q"))
    assert SimulatedObservation.objects.count() == 0


def test_state_progresses_with_time_and_updatestatus_follows(target):
    record = submit(target)
    facility = SimulatedFacility()
    status = facility.get_observation_status(record.observation_id)
    assert status == {"state": "PENDING", "scheduled_start": None, "scheduled_end": None}

    call_command("updatestatus")
    record.refresh_from_db()
    assert record.status == "PENDING"

    age(record.observation_id, 61)
    call_command("updatestatus")
    record.refresh_from_db()
    stored = SimulatedObservation.objects.get()
    assert (record.status, record.scheduled_start, record.scheduled_end) == (
        "SCHEDULED", stored.scheduled_at, stored.completed_at
    )  # fmt: skip
    assert not record.terminal

    age(record.observation_id, 540)
    call_command("updatestatus")
    record.refresh_from_db()
    assert record.status == "COMPLETED" and record.terminal and not record.failed


def test_state_is_a_function_of_the_stored_times(target):
    record = submit(target)
    request = SimulatedObservation.objects.get()
    assert (request.scheduled_at - request.submitted, request.completed_at - request.submitted) == (
        timedelta(seconds=60), timedelta(seconds=600)
    )  # fmt: skip
    at = request.submitted
    states = [SimulatedFacility.state_at(request, at + timedelta(seconds=s))["state"] for s in (0, 59, 60, 599, 600)]
    assert states == ["PENDING", "PENDING", "SCHEDULED", "SCHEDULED", "COMPLETED"]
    # a new facility instance (a restarted process) sees the same state
    assert SimulatedFacility().get_observation_status(record.observation_id)["state"] == "PENDING"


@override_settings(FACILITIES={"SIMULATED": {"SCHEDULE_AFTER_SECONDS": 0, "COMPLETE_AFTER_SECONDS": 0}})
def test_zero_durations_complete_at_once(target):
    record = submit(target)
    assert SimulatedFacility().get_observation_status(record.observation_id)["state"] == "COMPLETED"


def test_cancel(target):
    facility = SimulatedFacility()
    pending, scheduled, done = submit(target), submit(target), submit(target)
    age(scheduled.observation_id, 100)
    age(done.observation_id, 1000)

    assert facility.cancel_observation(pending.observation_id) is True
    assert facility.cancel_observation(pending.observation_id) is True  # already cancelled
    assert facility.cancel_observation(scheduled.observation_id) is True
    assert facility.cancel_observation(done.observation_id) is False  # too late
    assert facility.cancel_observation("sim-unknown") is False

    call_command("updatestatus")
    for record in (pending, scheduled, done):
        record.refresh_from_db()
    assert (pending.status, scheduled.status, done.status) == ("CANCELED", "CANCELED", "COMPLETED")
    assert pending.failed and pending.scheduled_start is None
    assert scheduled.scheduled_start is not None
    age(pending.observation_id, 10_000)  # a cancelled request never completes
    assert facility.get_observation_status(pending.observation_id)["state"] == "CANCELED"


@override_settings(ROOT_URLCONF=__name__)
def test_the_tom_pages_request_and_cancel(client, target):
    user = User.objects.create_superuser("observer", "o@example.org", "pw")
    client.force_login(user)
    url = reverse("tom_observations:create", kwargs={"facility": "Simulated"})
    page = client.get(url, {"target_id": target.pk})
    assert page.status_code == 200 and b"exposure_time" in page.content

    response = client.post(url, {
        "facility": "Simulated", "target_id": target.pk, "observation_type": "IMAGING",
        "name": "follow-up", "band": "g", "exposure_time": 120, "exposure_count": 2,
    })  # fmt: skip
    assert response.status_code == 302
    record = ObservationRecord.objects.get()
    assert record.facility == "Simulated" and record.parameters["band"] == "g"
    assert SimulatedObservation.objects.get().observation_id == record.observation_id

    invalid = client.post(url, {
        "facility": "Simulated", "target_id": target.pk, "observation_type": "IMAGING",
        "name": "bad", "band": "g", "exposure_time": 0, "exposure_count": 1,
    })  # fmt: skip
    assert invalid.status_code == 200 and ObservationRecord.objects.count() == 1

    response = client.get(reverse("tom_observations:cancel", kwargs={"pk": record.pk}))
    assert response.status_code == 302
    record.refresh_from_db()
    assert record.status == "CANCELED"

    status_page = client.get(reverse("tom_observations:render-facility-status-list"))
    assert status_page.status_code == 200 and b"sim.sim.1m" in status_page.content


def test_state_survives_without_the_observation_record(target):
    """The facility's own table holds the state: a record made later (the TOM's view does so) still works."""
    (observation_id,) = SimulatedFacility().submit_observation(payload(target))
    age(observation_id, 61)
    record = ObservationRecord.objects.create(target=target, facility="Simulated", parameters={},
                                              observation_id=observation_id)  # fmt: skip
    record.update_status()
    record.refresh_from_db()
    assert record.status == "SCHEDULED" and timezone.now() < record.scheduled_end


def test_the_periodic_task_follows_the_requests(target):
    from tom_mma.tasks import update_observation_statuses

    record = submit(target)
    update_observation_statuses.delay()  # eager in the test settings: the task's own code runs
    record.refresh_from_db()
    assert record.status == "PENDING"
    age(record.observation_id, FACILITY_SETTINGS["SIMULATED"]["COMPLETE_AFTER_SECONDS"] + 1)
    update_observation_statuses.delay()
    record.refresh_from_db()
    assert record.status == "COMPLETED"
