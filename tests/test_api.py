"""The REST API of both apps on the TOM's shared router: every endpoint against real rows, permissions,
escaping of alert text, the OpenAPI schema."""

from __future__ import annotations

import base64
import json
import warnings

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse
from tom_common.api_router import SharedAPIRootRouter

from tests.mma_rows import MARKUP, make_rows
from tom_mma.models import DerivedAlertRecord, EventCandidate, ObservationTrigger
from tom_mma_broker.models import Classification

pytestmark = pytest.mark.django_db

LISTS = ["mma-gw-event", "mma-gw-notice", "mma-gw-candidate", "mma-derived-alert", "mma-trigger", "mma-transient",
         "mma-link", "mma-schema", "mma-broker-archive", "mma-broker-quarantine", "mma-broker-candidate",
         "mma-broker-classification"]  # fmt: skip


@pytest.fixture
def rows(settings, django_capture_on_commit_callbacks):
    return make_rows(settings, django_capture_on_commit_callbacks)


def api(client, user, name: str, *args, **params):
    """GET an API endpoint as ``user`` (None: anonymous); the decoded JSON, asserting 200."""
    if user is not None:
        client.force_login(user)
    response = client.get(reverse(f"api:{name}", args=args), params, HTTP_ACCEPT="application/json")
    assert response.status_code == 200, (name, response.status_code, response.content[:300])
    return response.json()


def names(page: dict, key: str = "target_name") -> list:
    return [row[key] for row in page["results"]]


def test_the_endpoints_are_on_the_shared_router_and_its_root_lists_them(rows, client):
    prefixes = {prefix for prefix, _, _ in SharedAPIRootRouter.shared_router.registry}
    assert {"mma/gw-events", "mma/derived-alerts", "mma-broker/archive", "mma/schema"} <= prefixes
    client.force_login(rows.insider)
    root = client.get("/api/", HTTP_ACCEPT="application/json").json()
    assert root["mma/gw-events"].endswith("/api/mma/gw-events/")
    assert "targets" in root  # tom_targets' own, on the same router


@pytest.mark.parametrize("name", LISTS)
def test_anonymous_users_get_nothing(name, rows, client):
    response = client.get(reverse(f"api:{name}-list"), HTTP_ACCEPT="application/json")
    assert response.status_code in (401, 403)
    assert b"MS170817a" not in response.content and MARKUP.encode() not in response.content


def test_gw_events_list_detail_filters(rows, client):
    page = api(client, rows.outsider, "mma-gw-event-list")
    assert page["count"] == 1
    (event,) = page["results"]
    assert event["superevent_id"] == "MS170817a" and event["kind"] == "mock"
    assert event["state"] == "active" and event["retracted"] is False and event["never_live"] is False
    assert event["skymap"]["sha256"] == rows.event.skymap.sha256 and 0 < event["skymap"]["area_90"] < 1000
    assert "notices" not in event  # on the detail only
    assert api(client, None, "mma-gw-event-list", state="retracted")["count"] == 0
    assert api(client, None, "mma-gw-event-list", kind="mock", significant="true")["count"] == int(
        bool(rows.event.significant)
    )
    detail = api(client, None, "mma-gw-event-detail", "MS170817a")
    assert [n["alert_type"] for n in detail["notices"]] == ["PRELIMINARY"]
    assert len(detail["skymaps"]) == 1 and "fits" not in detail["skymaps"][0]
    (link,) = detail["links"]
    assert link["gw_event"] == "MS170817a" and link["second"]["source"] == "fermi-gbm"
    assert link["basis"] == "time+space" and 2.0 < link["dt"] < 2.1


def test_an_events_candidates_are_ranked_and_filtered_by_target_permissions(rows, client):
    insider = api(client, rows.insider, "mma-gw-event-candidates", "MS170817a")
    expected = EventCandidate.objects.filter(event=rows.event).order_by("credible_level", "-probdensity")
    assert names(insider) == [c.target.name for c in expected]
    assert set(names(insider)) == {"AT-public", "AT-secret", MARKUP}
    first, stored = insider["results"][0], expected[0]
    assert first["credible_level"] == stored.credible_level and first["probdensity"] == stored.probdensity
    assert first["superevent_id"] == "MS170817a" and first["skymap_sha256"] == rows.event.skymap.sha256
    outsider = api(client, rows.outsider, "mma-gw-event-candidates", "MS170817a")
    assert "AT-secret" not in names(outsider) and len(names(outsider)) == 2
    flat = api(client, rows.outsider, "mma-gw-candidate-list", event="MS170817a", ordering="credible_level")
    assert names(flat) == names(outsider)
    level = expected[1].credible_level
    inside = api(client, rows.insider, "mma-gw-candidate-list", credible_level_max=level)
    assert names(inside) == [c.target.name for c in expected if c.credible_level <= level]
    secret = EventCandidate.objects.get(target=rows.secret)
    client.force_login(rows.outsider)
    assert client.get(reverse("api:mma-gw-candidate-detail", args=[secret.pk])).status_code == 404
    assert api(client, rows.insider, "mma-gw-candidate-detail", secret.pk)["target_name"] == "AT-secret"


def test_notices_metadata_in_the_list_payload_on_the_detail(rows, client):
    page = api(client, rows.outsider, "mma-gw-notice-list", event="MS170817a")
    (notice,) = page["results"]
    assert notice["alert_type"] == "PRELIMINARY" and "payload" not in notice
    detail = api(client, None, "mma-gw-notice-detail", notice["id"])
    assert detail["payload"]["superevent_id"] == "MS170817a"
    assert api(client, None, "mma-gw-notice-list", alert_type="RETRACTION")["count"] == 0


def test_derived_alerts_score_history_permissions_and_pagination(rows, client):
    insider = api(client, rows.insider, "mma-derived-alert-list")
    assert insider["count"] == 6 and {r["candidate_name"] for r in insider["results"]} >= {"AT-secret"}
    outsider = api(client, rows.outsider, "mma-derived-alert-list")
    assert outsider["count"] == 4 and "AT-secret" not in {r["candidate_name"] for r in outsider["results"]}
    assert api(client, None, "mma-derived-alert-list", target=rows.secret.pk)["count"] == 0
    history = api(client, rows.insider, "mma-derived-alert-list", target=rows.secret.pk, kind="classification",
                  ordering="alert_created")  # fmt: skip
    assert [r["kilonova_score"] for r in history["results"]] == [0.42, 0.43]
    assert {r["model_version"] for r in history["results"]} == {"kn-test-1.0.0"}
    assert "raw" not in history["results"][0]
    secret = DerivedAlertRecord.objects.filter(target=rows.secret).first()
    client.force_login(rows.outsider)
    assert client.get(reverse("api:mma-derived-alert-detail", args=[secret.alert_id])).status_code == 404
    detail = api(client, rows.insider, "mma-derived-alert-detail", secret.alert_id)
    assert detail["raw"]["candidate"]["name"] == "AT-secret" and detail["target"] == rows.secret.pk
    assert api(client, None, "mma-derived-alert-list", score_min=0.9)["count"] == 2
    first = api(client, None, "mma-derived-alert-list", limit=4, ordering="-kilonova_score")
    assert first["count"] == 6 and len(first["results"]) == 4 and first["next"] and first["previous"] is None
    rest = api(client, None, "mma-derived-alert-list", limit=4, offset=4, ordering="-kilonova_score")
    assert len(rest["results"]) == 2 and rest["next"] is None
    scores = [r["kilonova_score"] for r in first["results"] + rest["results"]]
    assert scores == sorted(scores, reverse=True)


def test_an_orphaned_derived_alert_needs_the_models_view_permission(rows, client):
    DerivedAlertRecord.objects.filter(target=rows.public).update(target=None)
    assert api(client, rows.outsider, "mma-derived-alert-list")["count"] == 2
    rows.outsider.user_permissions.add(Permission.objects.get(codename="view_derivedalertrecord"))
    outsider = User.objects.get(pk=rows.outsider.pk)  # permissions are cached per user object
    assert api(client, outsider, "mma-derived-alert-list")["count"] == 4


def test_triggers_follow_their_targets(rows, client):
    triggers = ObservationTrigger.objects.all()
    assert triggers.exists()
    seen = api(client, rows.insider, "mma-trigger-list")
    assert {r["target"] for r in seen["results"]} == {t.target_id for t in triggers}
    outsider = api(client, rows.outsider, "mma-trigger-list")
    assert rows.secret.pk not in {r["target"] for r in outsider["results"]}
    assert outsider["count"] == triggers.exclude(target=rows.secret).count()


def test_transients_and_links(rows, client):
    page = api(client, rows.outsider, "mma-transient-list", messenger="gamma")
    (grb,) = page["results"]
    assert grb["source"] == "fermi-gbm" and grb["ra"] == 176.8 and grb["retracted"] is False
    assert "notices" not in grb and grb["has_healpix"] is False
    assert api(client, None, "mma-transient-list", messenger="neutrino")["count"] == 0
    detail = api(client, None, "mma-transient-detail", grb["id"])
    assert len(detail["notices"]) == 1 and detail["notices"][0]["content"]["id"] == ["524666471", "bn170817529"]
    assert [link["gw_event"] for link in detail["links"]] == ["MS170817a"]
    links = api(client, None, "mma-link-list", gw_event="MS170817a")
    assert links["count"] == 1 and links["results"][0]["second"]["id"] == grb["id"]
    assert api(client, None, "mma-link-list", transient=grb["id"])["count"] == 1
    assert api(client, None, "mma-link-list", gw_event="S000000a")["count"] == 0


def test_the_archive_and_quarantine_need_their_view_permissions(rows, client):
    client.force_login(rows.insider)
    for name in ("mma-broker-archive-list", "mma-broker-quarantine-list"):
        assert client.get(reverse(f"api:{name}")).status_code == 403
    assert client.get(reverse("api:mma-broker-archive-detail", args=[rows.archived.pk])).status_code == 403
    rows.insider.user_permissions.add(Permission.objects.get(codename="view_archivedalert"))
    insider = User.objects.get(pk=rows.insider.pk)
    assert api(client, insider, "mma-broker-archive-list")["results"]
    client.force_login(insider)
    assert client.get(reverse("api:mma-broker-quarantine-list")).status_code == 403


def test_archive_metadata_in_the_list_payload_on_the_detail_cursor_pages(rows, client):
    page = api(client, rows.staff, "mma-broker-archive-list")
    assert [r["id"] for r in page["results"]] == [rows.broken.pk, rows.archived.pk]  # newest first
    grb = page["results"][1]
    assert grb["subject"] == "524666471, bn170817529" and grb["topic"] == "gcn.notices.fermi.gbm"
    assert grb["status"] == "archived" and grb["quarantined"] is False and "payload_base64" not in grb
    assert page["results"][0]["quarantined"] is True
    detail = api(client, None, "mma-broker-archive-detail", rows.archived.pk)
    assert json.loads(base64.b64decode(detail["payload_base64"]))["id"] == ["524666471", "bn170817529"]
    assert detail["content"]["mission"] == "Fermi" and detail["size"] == len(base64.b64decode(detail["payload_base64"]))
    one = api(client, None, "mma-broker-archive-list", limit=1)
    assert [r["id"] for r in one["results"]] == [rows.broken.pk] and one["next"]
    following = client.get(one["next"], HTTP_ACCEPT="application/json").json()
    assert [r["id"] for r in following["results"]] == [rows.archived.pk]
    assert [r["id"] for r in api(client, None, "mma-broker-archive-list", topic="igwn.gwalert")["results"]] == [
        rows.broken.pk
    ]
    assert api(client, None, "mma-broker-archive-list", status="handled")["results"] == []
    found = api(client, None, "mma-broker-archive-list", q="BN170817529")  # in the content, any case
    assert [r["id"] for r in found["results"]] == [rows.archived.pk]
    assert api(client, None, "mma-broker-archive-list", q="S000000a")["results"] == []


def test_quarantine_with_reason_and_traceback(rows, client):
    page = api(client, rows.staff, "mma-broker-quarantine-list", released="false")
    (row,) = page["results"]
    assert row["alert"] == rows.broken.pk and row["topic"] == "igwn.gwalert" and row["stage"] == "handle"
    assert row["error_type"].endswith("ValueError") and "superevent_id" in row["reason"]
    assert "traceback" not in row
    detail = api(client, None, "mma-broker-quarantine-detail", row["id"])
    assert "_broken_handler" in detail["traceback"]
    assert api(client, None, "mma-broker-quarantine-list", released="true")["count"] == 0


def test_broker_candidates_and_classifications_follow_the_targets_of_their_names(rows, client):
    insider = api(client, rows.insider, "mma-broker-candidate-list")
    assert {r["name"] for r in insider["results"]} == {MARKUP, "AT-secret"}
    outsider = api(client, rows.outsider, "mma-broker-candidate-list")
    assert [r["name"] for r in outsider["results"]] == [MARKUP]
    secret = rows.broker_candidate.__class__.objects.get(name="AT-secret")
    client.force_login(rows.outsider)
    assert client.get(reverse("api:mma-broker-candidate-detail", args=[secret.pk])).status_code == 404
    classifications = api(client, rows.outsider, "mma-broker-classification-list")
    assert [r["candidate_name"] for r in classifications["results"]] == [MARKUP]
    assert api(client, rows.insider, "mma-broker-classification-list")["count"] == 2
    detail = api(client, rows.outsider, "mma-broker-candidate-detail", rows.broker_candidate.pk)
    stored = Classification.objects.get(candidate=rows.broker_candidate)
    (history,) = detail["classifications"]
    assert history["score"] == stored.score and history["model_version"] == stored.model_version
    assert history["features"] == json.loads(json.dumps(stored.features)) and len(detail["points"]) == 3
    by_version = api(client, rows.insider, "mma-broker-classification-list", model_version=stored.model_version)
    assert by_version["count"] == 2
    assert api(client, rows.insider, "mma-broker-classification-list", model_version="nope")["count"] == 0


def test_a_candidate_named_with_markup_comes_back_as_plain_string_data(rows, client):
    client.force_login(rows.insider)
    for name, key in (("mma-gw-candidate-list", "target_name"), ("mma-derived-alert-list", "candidate_name"),
                      ("mma-broker-candidate-list", "name")):  # fmt: skip
        response = client.get(reverse(f"api:{name}"), HTTP_ACCEPT="application/json")
        assert response["Content-Type"] == "application/json"
        assert MARKUP in {row[key] for row in response.json()["results"]}  # the very string, not escaped
    # the browsable API (an HTML page) escapes it
    page = client.get(reverse("api:mma-broker-candidate-list"), HTTP_ACCEPT="text/html")
    assert page["Content-Type"].startswith("text/html")
    assert MARKUP not in page.content.decode() and "&lt;script&gt;alert(1)&lt;/script&gt;" in page.content.decode()


def test_the_openapi_schema_validates_and_describes_every_endpoint(rows, client):
    from openapi_spec_validator import validate

    client.force_login(rows.outsider)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        response = client.get(reverse("api:mma-schema-list"))
    # no view left out of the parameters, no duplicate operation ids (DRF and django-filter warn)
    assert [
        str(w.message) for w in caught if "not compatible" in str(w.message) or "operationId" in str(w.message)
    ] == []
    assert response.status_code == 200 and response["Content-Type"].startswith("application/vnd.oai.openapi+json")
    schema = response.json()
    validate(schema)
    assert schema["info"]["title"] == "tom-mma API"
    paths = set(schema["paths"])
    assert {"/api/mma/gw-events/", "/api/mma/gw-events/{superevent_id}/",
            "/api/mma/gw-events/{superevent_id}/candidates/", "/api/mma/derived-alerts/{alert_id}/",
            "/api/mma-broker/archive/", "/api/mma-broker/quarantine/{id}/", "/api/mma/transients/",
            "/api/mma/links/", "/api/mma-broker/classifications/"} <= paths  # fmt: skip
    assert not any(p.startswith("/api/targets") or "schema" in p for p in paths)
    parameters = {p["name"] for p in schema["paths"]["/api/mma/derived-alerts/"]["get"]["parameters"]}
    assert {"limit", "offset", "target", "kind", "score_min", "ordering"} <= parameters


def test_filters_by_id_tell_nothing_of_private_targets(rows, client):
    client.force_login(rows.outsider)
    for name, param, value in (("mma-derived-alert-list", "target", rows.secret.pk),
                               ("mma-gw-candidate-list", "target", rows.secret.pk),
                               ("mma-trigger-list", "target", rows.secret.pk)):  # fmt: skip
        hidden = client.get(reverse(f"api:{name}"), {param: value}, HTTP_ACCEPT="application/json")
        missing = client.get(reverse(f"api:{name}"), {param: 987654}, HTTP_ACCEPT="application/json")
        assert (
            (hidden.status_code, hidden.json()["count"]) == (missing.status_code, missing.json()["count"]) == (200, 0)
        )
    # the browsable API's filter forms list no Targets or candidates
    for name in (
        "mma-derived-alert-list",
        "mma-gw-candidate-list",
        "mma-trigger-list",
        "mma-broker-classification-list",
    ):
        page = client.get(reverse(f"api:{name}"), HTTP_ACCEPT="text/html")
        assert page.status_code == 200 and "AT-secret" not in page.content.decode()


def test_a_broker_candidate_follows_the_target_that_carries_its_name_as_an_alias(rows, client):
    from tom_targets.models import TargetName

    from tom_mma_broker.models import Candidate

    Target = type(rows.secret)
    Target.objects.filter(pk=rows.secret.pk).update(name="SSS17x")
    TargetName.objects.create(target=rows.secret, name="AT-secret")
    assert "AT-secret" in {r["name"] for r in api(client, rows.insider, "mma-broker-candidate-list")["results"]}
    assert "AT-secret" not in {r["name"] for r in api(client, rows.outsider, "mma-broker-candidate-list")["results"]}
    # a candidate no Target carries: only with the model's view permission
    Candidate.objects.create(name="AT-nowhere", ra=1.0, dec=2.0)
    assert "AT-nowhere" not in {r["name"] for r in api(client, rows.insider, "mma-broker-candidate-list")["results"]}
    rows.outsider.user_permissions.add(Permission.objects.get(codename="view_candidate"))
    outsider = User.objects.get(pk=rows.outsider.pk)
    seen = {r["name"] for r in api(client, outsider, "mma-broker-candidate-list")["results"]}
    assert seen == {MARKUP, "AT-nowhere"}  # still not the private Target's
