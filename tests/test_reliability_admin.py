"""The archive in the Django admin: a raw-payload preview, escaped; topic health read-only."""

from __future__ import annotations

import base64

import pytest
from django.contrib.admin import site
from django.contrib.auth.models import User
from django.test import RequestFactory
from django.urls import reverse

from tom_mma_broker.ingest import Envelope, Ingestor
from tom_mma_broker.models import ArchivedAlert, TopicHealth

pytestmark = pytest.mark.django_db

BINARY = bytes(range(256)) * 40 + b"<script>alert(1)</script>"  # 10 KB of every byte value, then markup


@pytest.fixture
def admin_client(client):
    user = User.objects.create_superuser("admin", "admin@example.org", "pw")
    client.force_login(user)
    return client


@pytest.fixture
def binary_alert() -> ArchivedAlert:
    Ingestor({"bin.topic": None}).ingest([Envelope(topic="bin.topic", payload=BINARY, partition=0, offset=1)])
    return ArchivedAlert.objects.get()


def test_change_page_of_a_binary_alert_shows_an_escaped_preview(admin_client, binary_alert):
    response = admin_client.get(reverse("admin:tom_mma_broker_archivedalert_change", args=[binary_alert.pk]))
    assert response.status_code == 200
    page = response.content.decode()
    assert f"{len(BINARY)} bytes (first 4096 shown)" in page
    assert "00000000  00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f  ................" in page
    assert "00000040  40 41 42 43 44 45 46 47 48 49 4a 4b 4c 4d 4e 4f  @ABCDEFGHIJKLMNO" in page
    assert base64.b64encode(BINARY[:4096]).decode() in page
    assert "<script>alert(1)</script>" not in page


def test_short_payload_is_shown_whole_and_markup_escaped(admin_client):
    payload = b"<b>bold</b>\x00"
    Ingestor({"t": None}).ingest([Envelope(topic="t", payload=payload, partition=0, offset=2)])
    alert = ArchivedAlert.objects.get()
    page = admin_client.get(reverse("admin:tom_mma_broker_archivedalert_change", args=[alert.pk])).content.decode()
    assert "12 bytes</p>" in page and "&lt;b&gt;bold&lt;/b&gt;." in page and "<b>bold</b>" not in page


def test_topic_health_is_read_only(admin_client, binary_alert):
    health = TopicHealth.objects.get(topic="bin.topic")
    change_url = reverse("admin:tom_mma_broker_topichealth_change", args=[health.pk])
    assert admin_client.get(reverse("admin:tom_mma_broker_topichealth_changelist")).status_code == 200
    view = admin_client.get(change_url)
    assert view.status_code == 200 and b'name="_save"' not in view.content
    # refused: 403, which the TOM's middleware turns into a redirect to the login page
    assert admin_client.post(change_url, {"topic": "renamed"}).status_code in (302, 403)
    assert admin_client.get(reverse("admin:tom_mma_broker_topichealth_add")).status_code in (302, 403)
    delete_url = reverse("admin:tom_mma_broker_topichealth_delete", args=[health.pk])
    assert admin_client.post(delete_url, {"post": "yes"}).status_code in (302, 403)
    changelist = admin_client.get(reverse("admin:tom_mma_broker_topichealth_changelist")).content
    assert b"/admin/tom_mma_broker/topichealth/add/" not in changelist
    health.refresh_from_db()
    assert health.topic == "bin.topic" and health.messages_archived == 1
    request = RequestFactory().get("/")
    request.user = User.objects.get(username="admin")
    model_admin = site._registry[TopicHealth]
    assert model_admin.has_view_permission(request, health)
    assert not any(
        (model_admin.has_add_permission(request), model_admin.has_change_permission(request, health),
         model_admin.has_delete_permission(request, health))
    )  # fmt: skip
