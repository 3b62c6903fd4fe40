"""The derived-alert broker class: query form, search of the archive in the database, create target (merges)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import User
from django.test import override_settings
from django.urls import include, path, reverse
from guardian.shortcuts import get_perms
from tom_alerts.alerts import get_service_class
from tom_alerts.models import BrokerQuery
from tom_dataproducts.models import PhotometryReducedDatum
from tom_targets.models import Target

from tests.test_derived_factories import candidate, make_alert, retraction_dict
from tom_mma.alerts import DerivedAlertBroker, DerivedAlertQueryForm, search_derived_alerts
from tom_mma.derived import ingest_derived_alert
from tom_mma.models import DerivedAlertRecord
from tom_mma.schemas.derived_alert import DerivedAlert

pytestmark = pytest.mark.django_db

# The example TOM's URLs plus tom_alerts' (tomtoolkit 3.1 leaves them out; tom_mma.E041)
urlpatterns = [path("", include("tom_common.urls")), path("alerts/", include("tom_alerts.urls", namespace="alerts"))]

BROKER = "tom_mma.alerts.DerivedAlertBroker"
T0 = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def broker_settings():
    # no rules: these tests are about the query, not about observation requests
    with override_settings(TOM_ALERT_CLASSES=[BROKER], TOM_MMA={"OBSERVATION_RULES": []}, ROOT_URLCONF=__name__):
        yield


def ingest(received: datetime, **fields) -> DerivedAlertRecord:
    record = ingest_derived_alert(make_alert(**fields)).record
    DerivedAlertRecord.objects.filter(pk=record.pk).update(received=received)
    record.refresh_from_db()
    return record


@pytest.fixture
def archive():
    """Five classifications: scores, times, events and positions to tell the filters apart."""
    return {
        "low": ingest(T0, kilonova_score=0.1, latest_point_mjd=60796.0, candidate=candidate("LOW", 10.0, 10.0)),
        "mid": ingest(T0 + timedelta(hours=1), kilonova_score=0.55, latest_point_mjd=60797.0, gw_event="S250501a",
                      candidate=candidate("MID", 359.9999, 5.0)),
        "high": ingest(T0 + timedelta(hours=2), kilonova_score=0.9, latest_point_mjd=60798.0, gw_event="S250501a",
                       candidate=candidate("HIGH", 0.0002, 5.0)),
        "other": ingest(T0 + timedelta(hours=3), kilonova_score=0.95, latest_point_mjd=60799.0, gw_event="S250502b",
                        candidate=candidate("OTHER", 200.0, -60.0)),
        "polar": ingest(T0 + timedelta(hours=4), kilonova_score=0.7, latest_point_mjd=60800.0,
                        candidate=candidate("POLAR", 45.0, 89.9999)),
    }  # fmt: skip


def names(parameters: dict) -> list[str]:
    return [r.candidate_name for r in search_derived_alerts(parameters)]


def test_no_filter_lists_everything_newest_first(archive):
    assert names({}) == ["POLAR", "OTHER", "HIGH", "MID", "LOW"]


def test_score_range(archive):
    assert names({"score_min": 0.5, "score_max": 0.9}) == ["POLAR", "HIGH", "MID"]
    assert names({"score_min": 0.92}) == ["OTHER"]
    assert names({"score_max": 0.1}) == ["LOW"]


def test_time_window_on_received_or_latest_point(archive):
    window = {"time_start": (T0 + timedelta(minutes=30)).isoformat(), "time_end": T0 + timedelta(hours=2, minutes=1)}
    assert names({**window, "time_field": "received"}) == ["HIGH", "MID"]
    # MJD 60797.0 is 2025-05-02T00:00Z, 60799.0 is 2025-05-04T00:00Z
    latest = {"time_field": "latest_point", "time_start": "2025-05-02T00:00:00+00:00",
              "time_end": datetime(2025, 5, 4, tzinfo=UTC)}  # fmt: skip
    assert names(latest) == ["OTHER", "HIGH", "MID"]


def test_gw_event(archive):
    assert names({"gw_event": "S250501a"}) == ["HIGH", "MID"]
    assert names({"gw_event": "S000000x"}) == []


def test_cone_across_ra_zero_and_at_the_pole(archive):
    assert names({"ra": 0.0, "dec": 5.0, "radius_arcsec": 1.0}) == ["HIGH", "MID"]  # 0.72" and 0.36"
    assert names({"ra": 0.0, "dec": 5.0, "radius_arcsec": 0.5}) == ["MID"]
    assert names({"ra": 225.0, "dec": 89.9999, "radius_arcsec": 0.8}) == ["POLAR"]  # 0.72" over the pole
    assert names({"ra": 225.0, "dec": 89.9999, "radius_arcsec": 0.6}) == []


def test_filters_combine(archive):
    assert names({"score_min": 0.6, "gw_event": "S250501a", "ra": 0.0, "dec": 5.0, "radius_arcsec": 5}) == ["HIGH"]


def test_retracted_alerts_only_on_request(archive):
    ingest_derived_alert(DerivedAlert.from_dict(retraction_dict(make_alert(**archive["high"].raw))))
    assert "HIGH" not in names({})
    assert "HIGH" in names({"include_retracted": True})
    assert DerivedAlertRecord.objects.filter(kind="retraction").count() == 1  # never listed as a result
    assert len(names({"include_retracted": True})) == 5


def test_form_validation():
    form = DerivedAlertQueryForm(data={"query_name": "q", "broker": "MMA-Derived", "time_field": "received",
                                       "score_min": 0.8, "score_max": 0.2, "ra": 10, "dec": 10,
                                       "time_start": "2025-05-02 00:00", "time_end": "2025-05-01 00:00"})  # fmt: skip
    assert not form.is_valid()
    assert set(form.errors) == {"score_max", "radius_arcsec", "time_end"}
    assert "a cone needs RA, Dec and a radius" in form.errors["radius_arcsec"][0]
    ok = DerivedAlertQueryForm(data={"query_name": "q", "broker": "MMA-Derived", "time_field": "latest_point",
                                     "time_start": "2025-05-01 00:00", "gw_event": " S250501a "})  # fmt: skip
    assert ok.is_valid(), ok.errors
    query = ok.save()
    assert query.parameters["time_start"].startswith("2025-05-01T00:00:00")  # JSON-safe text
    assert query.parameters["gw_event"] == "S250501a"


def test_broker_is_a_tom_alerts_broker(archive):
    broker = get_service_class("MMA-Derived")()
    assert isinstance(broker, DerivedAlertBroker)
    alerts = list(broker.fetch_alerts({"score_min": 0.85}))
    generic = [broker.to_generic_alert(a) for a in alerts]
    assert [(g.name, g.score, g.gw_event) for g in generic] == [("OTHER", 0.95, "S250502b"), ("HIGH", 0.9, "S250501a")]
    assert generic[0].mag == pytest.approx(18.2024703)  # the latest detection
    assert generic[0].url == reverse("targets:detail", kwargs={"pk": archive["other"].target_id})
    assert broker.fetch_alert(str(archive["low"].alert_id))["candidate"]["name"] == "LOW"


def test_query_pages_show_scores_and_create_target_merges(client, archive):
    user = User.objects.create_user("astro", password="pw")
    client.force_login(user)
    response = client.post(reverse("tom_alerts:create"), {
        "query_name": "bright kilonovae", "broker": "MMA-Derived", "time_field": "received", "score_min": 0.85,
    })  # fmt: skip
    assert response.status_code == 302, response.content
    query = BrokerQuery.objects.get()

    page = client.get(reverse("tom_alerts:run", kwargs={"pk": query.pk}))
    assert page.status_code == 200
    html = page.content.decode()
    assert "OTHER" in html and "HIGH" in html and "LOW" not in html
    assert "0.950" in html and "0.900" in html and "S250502b" in html

    # create a target from a result whose candidate is already a Target: merged, not refused
    existing = archive["high"].target  # "MID": HIGH is 1.08" from MID, and was merged into it on ingest
    assert existing.name == "MID" and existing.aliases.filter(name="HIGH").exists()
    before = Target.objects.count()
    response = client.post(reverse("tom_alerts:create-target"), {
        "broker": "MMA-Derived", "query_id": query.pk, "alerts": [str(archive["high"].alert_id)],
    })  # fmt: skip
    assert response.status_code == 302 and response.url == reverse("tom_targets:list")
    assert Target.objects.count() == before
    assert "view_target" in get_perms(user, existing)
    assert PhotometryReducedDatum.objects.filter(target=existing).count() == 3  # the same points: none added


def test_create_target_from_a_result_makes_a_new_target_when_none_matches(client, archive):
    user = User.objects.create_user("astro", password="pw")
    client.force_login(user)
    Target.objects.filter(name="OTHER").delete()
    query = BrokerQuery.objects.create(name="q", broker="MMA-Derived", parameters={"gw_event": "S250502b"})
    assert client.get(reverse("tom_alerts:run", kwargs={"pk": query.pk})).status_code == 200  # caches the result
    client.post(reverse("tom_alerts:create-target"), {
        "broker": "MMA-Derived", "query_id": query.pk, "alerts": [str(archive["other"].alert_id)],
    })  # fmt: skip
    target = Target.objects.get(name="OTHER")
    assert (target.ra, target.dec) == (200.0, -60.0)
    assert target.aliases.count() == 0
    assert PhotometryReducedDatum.objects.filter(target=target).count() == 3
    assert "view_target" in get_perms(user, target)


def test_fetch_and_save_all_merges(archive):
    before = Target.objects.count()
    targets = DerivedAlertBroker().fetch_and_save_all({"gw_event": "S250501a"})
    assert [t.name for t in targets] == ["MID", "MID"]  # HIGH and MID are one target (1.08" apart)
    assert Target.objects.count() == before


def test_alert_text_is_escaped_in_the_results_page(client):
    user = User.objects.create_user("astro", password="pw")
    client.force_login(user)
    ingest(T0, candidate=candidate("<script>alert(1)</script>", 1.0, 1.0), model_version="<b>v1</b>")
    query = BrokerQuery.objects.create(name="q", broker="MMA-Derived", parameters={})
    html = client.get(reverse("tom_alerts:run", kwargs={"pk": query.pk})).content.decode()
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b>v1</b>" not in html
