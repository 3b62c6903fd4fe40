"""Every model of both apps in the admin: listed, searchable, a row's page shown; history read-only."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.contrib import admin
from django.urls import reverse

from tests.mma_rows import MARKUP, make_rows

pytestmark = pytest.mark.django_db


@pytest.fixture
def mma_rows(settings, django_capture_on_commit_callbacks):
    return make_rows(settings, django_capture_on_commit_callbacks)


MODELS = [m for app in ("tom_mma", "tom_mma_broker") for m in apps.get_app_config(app).get_models()]
# editing these by hand would rewrite what was received or computed
HISTORY = {
    "ArchivedAlert", "QuarantinedAlert", "EventNotice", "GWEvent", "EventSkyMap", "EventCandidate",
    "DerivedAlertRecord", "TransientEvent", "TransientNotice", "EventLink", "Classification", "CandidatePoint",
    "Candidate", "OutboxMessage", "TopicHealth", "SnewsDeciderState",
}  # fmt: skip


def test_every_model_of_both_apps_is_registered():
    assert len(MODELS) >= 17
    assert [m.__name__ for m in MODELS if not admin.site.is_registered(m)] == []


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_changelist_search_and_change_page_render_with_a_row(model, mma_rows, client):
    client.force_login(mma_rows.staff)
    opts = model._meta
    row = model.objects.order_by("pk").first()
    assert row is not None, f"the sample rows have no {opts.object_name}"
    changelist = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
    page = client.get(changelist)
    assert page.status_code == 200
    assert MARKUP not in page.content.decode()  # escaped wherever it shows
    model_admin = admin.site._registry[model]
    if model_admin.search_fields:
        assert client.get(changelist, {"q": "MS170817a"}).status_code == 200
        assert client.get(changelist, {"q": "not-a-uuid"}).status_code == 200
    change = client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[row.pk]))
    assert change.status_code == 200
    assert MARKUP not in change.content.decode()
    if opts.object_name in HISTORY:
        request = page.wsgi_request
        assert not model_admin.has_add_permission(request)
        assert not model_admin.has_change_permission(request, row)
        assert not model_admin.has_delete_permission(request, row)
        assert b'name="_save"' not in change.content


def test_archive_list_names_the_subject_and_a_file_replay_its_origin(mma_rows, client):
    from tom_mma_broker.ingest import Envelope, Ingestor
    from tom_mma_broker.models import ArchivedAlert

    client.force_login(mma_rows.staff)
    Ingestor({"replayed": None}).ingest(
        [Envelope(topic="replayed", payload=b'{"superevent_id": "S230518h"}', origin="file")]
    )
    replayed = ArchivedAlert.objects.get(topic="replayed")
    assert "None" not in str(replayed) and "replayed" in str(replayed)
    page = client.get(reverse("admin:tom_mma_broker_archivedalert_changelist")).content.decode()
    assert "bn170817529" in page  # the GRB notice's id: the subject column
    assert "S230518h" in page and "file replay" in page
    found = client.get(reverse("admin:tom_mma_broker_archivedalert_changelist"), {"q": "S230518h"})
    assert found.context["cl"].result_count == 1


def test_quarantine_page_keeps_the_traceback_indentation(mma_rows, client):
    client.force_login(mma_rows.staff)
    quarantine = mma_rows.broken.quarantine
    assert "\n  " in quarantine.traceback
    page = client.get(reverse("admin:tom_mma_broker_quarantinedalert_change", args=[quarantine.pk])).content.decode()
    assert "<pre" in page and "the notice" in page
    assert "\n  the notice" in page  # the reason's own indentation, inside <pre>


def test_the_quarantine_is_read_only_but_its_rehandle_action_remains(mma_rows, client):
    client.force_login(mma_rows.staff)
    quarantine = mma_rows.broken.quarantine
    url = reverse("admin:tom_mma_broker_quarantinedalert_changelist")
    assert 'value="rehandle"' in client.get(url).content.decode()
    done = client.post(url, {"action": "rehandle", "_selected_action": [quarantine.pk]}, follow=True)
    assert "1 message(s) queued to be handled again." in done.content.decode()
