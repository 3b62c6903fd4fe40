"""The ``MMA-Archive`` data service: this TOM's stored alerts through tomtoolkit 3's Data Services pages.

The archive is filled through the services: derived alerts through ``ingest_derived_alert``, optical alerts
(rows of Fink's real sample alerts) through the optical stream's ``ingest_optical_alert``, and the real LVK
mock superevent MS181101ab (its preliminary notice and BAYESTAR sky map) ranks the Targets. The pages run
through Django's test client: the query form, tom_dataservices' result page, "Create Targets".
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.test import override_settings
from django.urls import reverse
from hop.models import AvroBlob
from tom_dataproducts.models import PhotometryReducedDatum
from tom_targets.models import Target

from tests import fink_api_standin
from tests.lvk_samples import DATA
from tests.test_derived_factories import candidate, make_alert
from tom_mma import receivers
from tom_mma.archive import ArchiveQuery, search_archive
from tom_mma.dataservices.archive import ArchiveQueryForm
from tom_mma.derived import ingest_derived_alert
from tom_mma.handlers.lvk import igwn_gwalert_handler
from tom_mma.models import DerivedAlertRecord, EventCandidate, GWEvent
from tom_mma.optical.fink_api import alerts_from_rows
from tom_mma.optical.service import ingest_optical_alert
from tom_mma.targets import assign_target_permissions

pytestmark = pytest.mark.django_db

LOCAL_CACHE = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "mma-archive-tests"}}
BEST = (194.30419921874997, -17.856895095545468)  # the most probable position of MS181101ab
T0 = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def archive_settings(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    # tom_dataservices' result page clears the whole cache: give these tests a cache of their own
    with override_settings(CACHES=LOCAL_CACHE, TOM_MMA={"ACCEPT_MOCK_EVENTS": True, "OBSERVATION_RULES": []}):
        receivers.connect()
        yield


def derived(name: str, ra: float, dec: float, score: float, received: datetime, **fields) -> DerivedAlertRecord:
    record = ingest_derived_alert(make_alert(candidate=candidate(name, ra, dec), kilonova_score=score, **fields)).record
    DerivedAlertRecord.objects.filter(pk=record.pk).update(received=received)
    record.refresh_from_db()
    return record


@pytest.fixture
def archive(django_capture_on_commit_callbacks):
    """Derived alerts, optical Targets, a private Target, then a GW event that ranks them all."""
    public_group = Group.objects.create(name="Public")
    Group.objects.create(name="Secret")
    member = User.objects.create_user("member", password="pw")
    member.groups.add(public_group)
    outsider = User.objects.create_user("outsider", password="pw")
    secret = Target.objects.create(
        name="AT-secret", type="SIDEREAL", ra=BEST[0] + 0.01, dec=BEST[1], permissions="PRIVATE"
    )
    assign_target_permissions(secret, ["Secret"])
    with django_capture_on_commit_callbacks(execute=True):
        rows = {
            "inside": derived("KN-inside", *BEST, 0.9, T0, gw_event="MS181101ab"),
            "faint": derived("KN-faint", BEST[0] + 0.02, BEST[1], 0.3, T0 + timedelta(hours=1)),
            "far": derived("KN-far", 10.0, 10.0, 0.95, T0 + timedelta(hours=2)),
            "secret": derived("AT-secret", secret.ra, secret.dec, 0.99, T0 + timedelta(hours=3)),
        }
        optical = [ingest_optical_alert(a) for a in alerts_from_rows(fink_api_standin.load_rows())]
        igwn_gwalert_handler(AvroBlob.load_file(DATA / "MS181101ab-preliminary.avro"), None)
    return {
        **rows,
        "optical": {r.target.name: r.target for r in optical},
        "secret_target": secret,
        "member": member,
        "outsider": outsider,
        "event": GWEvent.objects.get(),
    }


def search(user, **parameters) -> list[tuple[str, str]]:
    return [(hit["kind"], hit["name"]) for hit in search_archive(ArchiveQuery.from_parameters(parameters), user)]


# -- the search -----------------------------------------------------------------------------------------
def test_the_ranking_is_what_the_region_filter_reads(archive):
    event = archive["event"]
    inside = EventCandidate.objects.get(event=event, target__name="KN-inside")
    assert inside.credible_level < 0.9
    far = EventCandidate.objects.filter(event=event, target__name="KN-far").first()
    assert far is None or far.credible_level > 0.9


def test_every_kind_is_found_and_cut_to_what_the_user_may_see(archive):
    member_hits = search(archive["member"])
    assert ("derived", "KN-inside") in member_hits and ("derived", "KN-far") in member_hits
    assert {name for kind, name in member_hits if kind == "optical"} == set(archive["optical"])
    assert ("gw", "KN-inside") in member_hits
    # AT-secret is private to Secret: neither its derived alert nor its GW candidate row
    assert not [hit for hit in member_hits if hit[1] == "AT-secret"]
    assert search(archive["outsider"]) == []
    insider = User.objects.create_user("insider", password="pw")
    insider.groups.add(Group.objects.get(name="Secret"))
    assert ("derived", "AT-secret") in search(insider, kinds=["derived"])


def test_by_name_alias_or_alert_id(archive):
    member = archive["member"]
    assert search(member, kinds=["derived"], name="kn-FAR") == [("derived", "KN-far")]
    assert search(member, kinds=["derived"], name=str(archive["faint"].alert_id)) == [("derived", "KN-faint")]
    assert search(member, kinds=["optical"], name="ztf18abtvigi") == [("optical", "ZTF18abtvigi")]
    # the derived-alert factory's candidate carries no alias; a Target alias finds its derived alerts too
    target = archive["far"].target
    target.aliases.create(name="AT2025far")
    assert search(member, kinds=["derived"], name="AT2025far") == [("derived", "KN-far")]


def test_cone_time_and_score(archive):
    member = archive["member"]
    cone = {"ra": BEST[0], "dec": BEST[1], "radius_arcsec": 90.0}  # KN-faint is 68.5" away, KN-far far away
    assert search(member, kinds=["derived"], **cone) == [("derived", "KN-faint"), ("derived", "KN-inside")]
    assert search(member, kinds=["derived"], score_min=0.5, **cone) == [("derived", "KN-inside")]
    window = {"time_start": (T0 + timedelta(minutes=30)).isoformat(), "time_end": (T0 + timedelta(hours=2)).isoformat()}
    assert search(member, kinds=["derived"], **window) == [("derived", "KN-far"), ("derived", "KN-faint")]
    # optical: a detection in the range (limits do not count); JD 2458796.6275 (2019-11-09 03:03 UTC) is a
    # detection of ZTF18abtvigi and of ZTF18abtvjik only
    optical = search(member, kinds=["optical"], time_start="2019-11-09T00:00:00+00:00",
                     time_end="2019-11-09T23:59:00+00:00")  # fmt: skip
    assert sorted(name for _kind, name in optical) == ["ZTF18abtvigi", "ZTF18abtvjik"]
    # an optical or GW row's score is its Target's latest derived alert's: no optical Target has one
    assert search(member, kinds=["optical"], score_min=0.1) == []
    gw = [name for _kind, name in search(member, kinds=["gw"], gw_event="MS181101ab", score_min=0.5)]
    assert gw == ["KN-inside"]  # KN-faint (0.3) is inside the region too, but under the score
    assert "KN-faint" in [name for _kind, name in search(member, kinds=["gw"], gw_event="MS181101ab")]


def test_fink_class_and_gw_region(archive):
    member = archive["member"]
    rrlyr = search(member, fink_class="rrlyr")  # the optical Targets, also as GW candidates (ranked)
    assert sorted(name for kind, name in rrlyr if kind == "optical") == sorted(archive["optical"])
    assert {name for _kind, name in rrlyr} == set(archive["optical"])
    assert search(member, fink_class="Kilonova candidate") == []
    assert search(member, kinds=["derived"], fink_class="RRLyr") == []  # the derived alerts' Targets have none
    in_region = search(member, gw_event="MS181101ab", credible_level=0.9)
    assert ("derived", "KN-inside") in in_region and ("gw", "KN-inside") in in_region
    assert ("derived", "KN-far") not in in_region and ("gw", "KN-far") not in in_region
    assert all(name != "AT-secret" for _k, name in in_region)
    level = EventCandidate.objects.get(target__name="KN-inside").credible_level
    tighter = search(member, kinds=["gw"], gw_event="MS181101ab", credible_level=level * 0.99)
    assert ("gw", "KN-inside") not in tighter
    assert search(member, gw_event="S000000x") == []


def test_retracted_derived_alerts_only_on_request(archive):
    DerivedAlertRecord.objects.filter(pk=archive["far"].pk).update(retracted=True)
    assert ("derived", "KN-far") not in search(archive["member"], kinds=["derived"])
    assert ("derived", "KN-far") in search(archive["member"], kinds=["derived"], include_retracted=True)


def test_a_derived_alert_whose_target_is_gone_needs_the_model_permission(archive):
    Target.objects.filter(pk=archive["far"].target_id).delete()
    assert ("derived", "KN-far") not in search(archive["member"], kinds=["derived"])
    staff = User.objects.create_user("staff", password="pw", is_superuser=True)
    assert ("derived", "KN-far") in search(staff, kinds=["derived"])


def test_form_validation():
    form = ArchiveQueryForm(data={"data_service": "MMA-Archive", "ra": 10, "dec": 10,
                                  "time_start": "2025-05-02 00:00", "time_end": "2025-05-01 00:00"})  # fmt: skip
    assert not form.is_valid()
    assert set(form.errors) == {"radius_arcsec", "time_end"}
    ok = ArchiveQueryForm(data={"data_service": "MMA-Archive", "kinds": ["gw"], "gw_event": " MS181101ab ",
                                "time_start": "2025-05-01 00:00"})  # fmt: skip
    assert ok.is_valid(), ok.errors
    assert ok.cleaned_data["gw_event"] == "MS181101ab" and ok.cleaned_data["credible_level"] == 0.9
    assert ok.cleaned_data["time_start"].startswith("2025-05-01T00:00:00")  # JSON-safe text


# -- the pages ------------------------------------------------------------------------------------------
def run_query(client, **fields):
    response = client.post(reverse("tom_dataservices:create"), {"data_service": "MMA-Archive", **fields})
    if response.status_code != 302:
        return response
    return client.get(response.url)


def test_query_page_and_create_target_through_the_client(archive, client):
    client.force_login(archive["member"])
    assert client.get(reverse("tom_dataservices:create"), {"data_service": "MMA-Archive"}).status_code == 200
    page = run_query(client, kinds=["derived"], name="KN-inside")
    assert page.status_code == 200 and page.context["query_feedback"] == ""
    (row,) = page.context["results"]
    assert row["name"] == "KN-inside" and row["kilonova_score"] == pytest.approx(0.9)
    html = page.content.decode()
    assert 'id="mma-archive-results"' in html and "KN-inside" in html and "MS181101ab" in html

    # the Target was deleted meanwhile: "Create Targets" makes it again, with the alert's photometry
    Target.objects.filter(name="KN-inside").delete()
    response = client.post(
        reverse("tom_dataservices:create-target"),
        {"data_service": "MMA-Archive", "query_id": "", "selected_results": ["0"]},
    )
    target = Target.objects.get(name="KN-inside")
    assert response.status_code == 302 and response.url == reverse("tom_targets:detail", kwargs={"pk": target.pk})
    assert PhotometryReducedDatum.objects.filter(target=target).count() == len(make_alert().photometry)
    assert client.get(response.url).status_code == 200  # the person who made it may see it


def test_create_target_merges_into_the_existing_target(archive, client):
    client.force_login(archive["member"])
    run_query(client, kinds=["optical"], name="ZTF18abvcdqu")
    before = Target.objects.count()
    response = client.post(
        reverse("tom_dataservices:create-target"),
        {"data_service": "MMA-Archive", "query_id": "", "selected_results": ["0"]},
    )
    target = archive["optical"]["ZTF18abvcdqu"]
    assert response.status_code == 302 and response.url == reverse("tom_targets:detail", kwargs={"pk": target.pk})
    assert Target.objects.count() == before


def test_a_saved_query_runs_again(archive, client):
    client.force_login(archive["member"])
    run_query(client, kinds=["gw"], gw_event="MS181101ab", credible_level=0.9, query_save="on", query_name="in 90%")
    from tom_dataservices.models import DataServiceQuery

    query = DataServiceQuery.objects.get(name="in 90%")
    page = client.get(reverse("tom_dataservices:run_saved", kwargs={"pk": query.pk}))
    assert page.status_code == 200
    # KN-faint is 68" from the most probable position, inside too; AT-secret is not the member's to see
    assert sorted(r["name"] for r in page.context["results"]) == ["KN-faint", "KN-inside"]


def test_the_hook_names_no_service_without_tom_dataservices(settings):
    from django.apps import apps

    config = apps.get_app_config("tom_mma")
    assert [s["class"] for s in config.data_services()] == [
        "tom_mma.dataservices.archive.ArchiveDataService",
        "tom_mma.dataservices.fink.FinkDataService",
    ]
    with override_settings(INSTALLED_APPS=[a for a in settings.INSTALLED_APPS if a != "tom_dataservices"]):
        assert apps.get_app_config("tom_mma").data_services() == []


def test_one_users_results_are_not_shown_to_another(archive, client):
    """tom_dataservices caches a query's results for whoever runs the same parameters next: not across users."""
    insider = User.objects.create_user("insider", password="pw")
    insider.groups.add(Group.objects.get(name="Secret"), Group.objects.get(name="Public"))
    client.force_login(insider)
    page = run_query(client, kinds=["derived"], score_min=0.95)
    assert [r["name"] for r in page.context["results"]] == ["AT-secret", "KN-far"]
    client.force_login(archive["member"])
    page = run_query(client, kinds=["derived"], score_min=0.95)
    assert [r["name"] for r in page.context["results"]] == ["KN-far"]
