"""tom_mma's models in the admin: every one listed, history read-only, a failed trigger requeued from there."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.auth.models import User
from django.test import override_settings
from django.urls import reverse

from tests.test_derived_factories import make_alert
from tom_mma.derived import ingest_derived_alert
from tom_mma.models import (
    DerivedAlertRecord,
    EventCandidate,
    EventNotice,
    EventObservation,
    EventSkyMap,
    GWEvent,
    ObservationTrigger,
    SimulatedObservation,
)

pytestmark = pytest.mark.django_db

MODELS = [GWEvent, EventNotice, EventSkyMap, EventCandidate, EventObservation, DerivedAlertRecord,
          ObservationTrigger, SimulatedObservation]  # fmt: skip


@pytest.fixture
def staff(client):
    user = User.objects.create_superuser("admin", "admin@example.org", "pw")
    client.force_login(user)
    return client


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_every_model_is_listed_and_history_cannot_be_edited(model, staff):
    assert admin.site.is_registered(model)
    page = staff.get(reverse(f"admin:tom_mma_{model._meta.model_name}_changelist"))
    assert page.status_code == 200
    model_admin = admin.site._registry[model]
    request = page.wsgi_request
    assert not model_admin.has_add_permission(request)
    assert not model_admin.has_delete_permission(request)


def test_a_failed_trigger_is_sent_again_from_the_admin_and_alert_text_is_escaped(
    staff, django_capture_on_commit_callbacks
):
    with override_settings(TOM_MMA={"OBSERVATION_SCORE_ONLY_WITHOUT_SKYMAP": True, "OBSERVATION_FACILITY": "Nowhere"}):
        with django_capture_on_commit_callbacks(execute=True):
            ingest_derived_alert(make_alert(candidate={"name": "<script>x</script>", "ra": 1.0, "dec": 2.0}))
    trigger = ObservationTrigger.objects.get()
    assert trigger.status == "failed" and "Nowhere" in trigger.error
    listing = staff.get(reverse("admin:tom_mma_derivedalertrecord_changelist")).content.decode()
    assert "<script>x</script>" not in listing and "&lt;script&gt;x&lt;/script&gt;" in listing
    url = reverse("admin:tom_mma_observationtrigger_changelist")
    with override_settings(
        TOM_FACILITY_CLASSES=["tom_mma.facilities.simulated.SimulatedFacility"],
        TOM_MMA={"OBSERVATION_SCORE_ONLY_WITHOUT_SKYMAP": True},
    ):
        with django_capture_on_commit_callbacks(execute=True):
            done = staff.post(url, {"action": "retry", "_selected_action": [trigger.pk]}, follow=True)
    assert "1 failed trigger(s) sent to their facility again" in done.content.decode()
    trigger.refresh_from_db()
    assert trigger.status == "submitted" and trigger.observation_records.count() == 1
