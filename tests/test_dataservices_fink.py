"""The ``MMA-Fink`` data service: Fink's REST API through tomtoolkit 3's Data Services pages.

Fink's real API cannot be reached from here (the test machines have no network but the package
registries): the remote service is the stand-in of ``tests/fink_api_standin.py``, a real HTTP server on
loopback answering in the API's documented form with rows of Fink's real sample alerts. Everything else
is real: the forms, tom_dataservices' views, the session, the cache, ``requests``, the optical stream's
Target service and the database.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User
from django.test import override_settings
from django.urls import reverse
from guardian.shortcuts import get_perms
from tom_dataproducts.models import PhotometryReducedDatum
from tom_targets.models import Target, TargetExtra

from tests import fink_api_standin
from tom_mma.checks_dataservices import check_fink_api
from tom_mma.optical.fink_api import FinkApiError, FinkQuery, alerts_from_rows, query_fink

pytestmark = pytest.mark.django_db

LOCAL_CACHE = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "mma-fink-tests"}}
CREATE = "tom_dataservices:create"
RUN = "tom_dataservices:run"
CREATE_TARGETS = "tom_dataservices:create-target"


@pytest.fixture
def api():
    yield from fink_api_standin.running()


@pytest.fixture
def fink_settings(api):
    # tom_dataservices' result page clears the whole cache: give these tests a cache of their own
    with override_settings(
        CACHES=LOCAL_CACHE,
        TOM_MMA={"FINK_API_URL": api.url, "FINK_API_TIMEOUT_S": 5.0, "OBSERVATION_RULES": []},
    ):
        yield api


@pytest.fixture
def user(client):
    person = User.objects.create_user("astro", password="pw")
    client.force_login(person)
    return person


def run_query(client, **fields):
    """Send the form; return the result page (or the form again, when it does not validate)."""
    data = {"data_service": "MMA-Fink", "query_kind": "object", "n": 100, **fields}
    response = client.post(reverse(CREATE), data)
    if response.status_code != 302:
        return response
    assert response.url == reverse(RUN)
    return client.get(response.url)


def result_names(response) -> list[str]:
    return [row["name"] for row in response.context["results"]]


def create_targets(client, *ids):
    return client.post(
        reverse(CREATE_TARGETS),
        {"data_service": "MMA-Fink", "query_id": "", "selected_results": [str(i) for i in ids]},
    )


# -- the service's parts ------------------------------------------------------------------------------
def test_rows_become_one_alert_per_object_latest_detection_first():
    rows = fink_api_standin.load_rows()
    alerts = {a.object_id: a for a in alerts_from_rows(rows)}
    assert set(alerts) == {"ZTF18abvcdqu", "ZTF18abskozm", "ZTF18abtvigi", "ZTF18abtvjik"}
    alert = alerts["ZTF18abvcdqu"]
    assert alert.alert_id == "1048092120315015012"  # the packet's own candidate
    assert alert.ra == pytest.approx(315.8562863) and alert.dec == pytest.approx(-20.7102865)
    assert alert.mjd == pytest.approx(2458802.5921296 - 2400000.5)
    assert len(alert.detections) == 7 and sum(p.is_limit for p in alert.points) == 17
    assert [p.kind for p in alert.points].count("detection") == 1
    assert dict(alert.crossmatches) == {"cdsxmatch": "RRLyr", "classification": "RRLyr"}
    assert alert.broker == "Fink" and alert.survey == "ZTF"


def test_a_row_without_an_object_id_is_an_error():
    with pytest.raises(FinkApiError, match="i:objectId"):
        alerts_from_rows([{"i:ra": 1.0}])


def test_query_fink_posts_the_documented_bodies(fink_settings):
    api = fink_settings
    assert len(query_fink(FinkQuery(kind="object", object_id="ZTF18abskozm"))) == 10  # 6 detections, 4 limits
    query_fink(FinkQuery(kind="cone", ra=313.8628971, dec=-15.5691408, radius_arcsec=5.0, n=7))
    query_fink(FinkQuery(kind="class", fink_class="Early SN Ia candidate", n=3, startdate="2019-11-01 00:00:00"))
    query_fink(FinkQuery(kind="sso", sso="8467"))
    assert api.requests == [
        ("/api/v1/objects", {"objectId": "ZTF18abskozm", "withupperlim": True, "output-format": "json"}),
        ("/api/v1/conesearch", {"ra": 313.8628971, "dec": -15.5691408, "radius": 5.0, "n": 7, "output-format": "json"}),
        ("/api/v1/latests", {"class": "Early SN Ia candidate", "n": 3, "startdate": "2019-11-01 00:00:00",
                             "output-format": "json"}),
        ("/api/v1/sso", {"n_or_d": "8467", "output-format": "json"}),
    ]  # fmt: skip


# -- the pages ----------------------------------------------------------------------------------------
def test_the_services_are_in_the_data_services_menu(fink_settings, client, user):
    page = client.get("/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Data Services" in html
    assert f"{reverse(CREATE)}?data_service=MMA-Fink" in html
    assert f"{reverse(CREATE)}?data_service=MMA-Archive" in html
    form = client.get(reverse(CREATE), {"data_service": "MMA-Fink"})
    assert form.status_code == 200
    assert 'name="query_kind"' in form.content.decode() and "ZTF object id" in form.content.decode()


def test_object_search_lists_the_object_and_create_target_grows_it_like_the_stream(fink_settings, client, user):
    page = run_query(client, query_kind="object", object_id=" ZTF18abvcdqu ")
    assert page.status_code == 200 and page.context["query_feedback"] == ""
    (row,) = page.context["results"]
    assert row["name"] == "ZTF18abvcdqu" and row["detections"] == 7 and row["fink_class"] == "RRLyr"
    assert row["mag"] == pytest.approx(18.028749465942383) and row["band"] == "ztfg"
    assert "ZTF18abvcdqu" in page.content.decode() and "RRLyr" in page.content.decode()

    response = create_targets(client, 0)
    target = Target.objects.get(name="ZTF18abvcdqu")
    assert response.status_code == 302 and response.url == reverse("tom_targets:detail", kwargs={"pk": target.pk})
    points = PhotometryReducedDatum.objects.filter(target=target)
    assert points.filter(brightness__isnull=False).count() == 7
    assert points.filter(limit__isnull=False).count() == 17
    assert set(points.values_list("source_name", flat=True)) == {"Fink ZTF"}  # the optical service's rows
    extras = dict(TargetExtra.objects.filter(target=target).values_list("key", "value"))
    assert extras["fink:cdsxmatch"] == "RRLyr" and extras["fink:classification"] == "RRLyr"
    # who may see it: the stream's groups, and the person who made it
    assert set(get_perms(Group.objects.get(name="Public"), target)) >= {"view_target", "change_target"}
    assert "view_target" in get_perms(user, target)
    assert client.get(response.url).status_code == 200

    # the same object again adds nothing: merged by name, its points known
    run_query(client, query_kind="object", object_id="ZTF18abvcdqu")
    create_targets(client, 0)
    assert Target.objects.filter(name="ZTF18abvcdqu").count() == 1
    assert PhotometryReducedDatum.objects.filter(target=target).count() == 24


def test_a_result_merges_into_a_target_of_another_name_at_the_same_place(fink_settings, client, user):
    existing = Target.objects.create(name="AT2019xyz", type=Target.SIDEREAL, ra=313.8628971, dec=-15.5691408)
    run_query(client, query_kind="cone", ra=313.8628971, dec=-15.5691408, radius_arcsec=3)
    create_targets(client, 0)
    assert not Target.objects.filter(name="ZTF18abskozm").exists()
    assert existing.aliases.filter(name="ZTF18abskozm").exists()
    # a cone search gives each object's latest alert; its whole history was asked for when the Target was made
    assert [path for path, _body in fink_settings.requests] == ["/api/v1/conesearch", "/api/v1/objects"]
    assert PhotometryReducedDatum.objects.filter(target=existing, brightness__isnull=False).count() == 6
    assert PhotometryReducedDatum.objects.filter(target=existing, limit__isnull=False).count() == 4


def test_cone_search_finds_the_objects_inside(fink_settings, client, user):
    # ZTF18abvcdqu (315.856, -20.710) and ZTF18abtvjik (307.405, -20.637) are 7.9 degrees apart
    assert result_names(run_query(client, query_kind="cone", ra=315.8562863, dec=-20.7102865, radius_arcsec=2)) == [
        "ZTF18abvcdqu"
    ]
    assert result_names(run_query(client, query_kind="cone", ra=0.0, dec=0.0, radius_arcsec=10)) == []


def test_class_search_gives_the_latest_alerts_of_the_class_in_the_date_range(fink_settings, client, user):
    api = fink_settings
    page = run_query(client, query_kind="class", fink_class="(SIMBAD) RRLyr", n=40)
    assert sorted(result_names(page)) == ["ZTF18abskozm", "ZTF18abtvigi", "ZTF18abtvjik", "ZTF18abvcdqu"]
    # 2019-10-18 00:00 to 2019-10-20 12:00 UTC is JD 2458774.5 to 2458777.0: ZTF18abtvigi's first detection
    # is later (JD 2458777.598)
    page = run_query(
        client, query_kind="class", fink_class="(SIMBAD) RRLyr", n=40, startdate="2019-10-18 00:00",
        stopdate="2019-10-20 12:00",
    )  # fmt: skip
    assert api.requests[-1][1]["startdate"] == "2019-10-18 00:00:00"
    assert api.requests[-1][1]["stopdate"] == "2019-10-20 12:00:00"
    assert sorted(result_names(page)) == ["ZTF18abskozm", "ZTF18abtvjik", "ZTF18abvcdqu"]
    empty = run_query(client, query_kind="class", fink_class="Kilonova candidate")
    assert result_names(empty) == [] and "Fink has no alert for this search." in empty.content.decode()


def test_solar_system_search_asks_for_the_number(fink_settings, client, user):
    api = fink_settings
    page = run_query(client, query_kind="sso", sso="8467")
    assert page.status_code == 200 and result_names(page) == []  # the four sample alerts are no asteroid
    assert api.requests[-1] == ("/api/v1/sso", {"n_or_d": "8467", "output-format": "json"})


def test_the_form_requires_the_fields_of_its_search(fink_settings, client, user):
    api = fink_settings
    page = run_query(client, query_kind="cone", ra=10.0, dec=10.0)
    assert page.status_code == 200 and "radius_arcsec" in page.context["form"].errors
    page = run_query(client, query_kind="object", object_id="ZTF18abvcdqu", startdate="2019-01-01 00:00")
    assert "startdate" in page.context["form"].errors
    page = run_query(
        client, query_kind="class", fink_class="SN candidate", startdate="2020-01-02", stopdate="2020-01-01"
    )
    assert "stopdate" in page.context["form"].errors
    assert api.requests == []  # nothing was asked


@pytest.mark.parametrize(
    ("fail", "said"),
    [
        ("503", "failed with HTTP 503; try again later"),
        ("not-json", "answered with something that is not JSON"),
        ("not-a-list", "answered with JSON that is not a list of rows"),
    ],
)
def test_a_failing_api_is_a_message_on_the_page_not_a_traceback(fink_settings, client, user, fail, said):
    fink_settings.fail = fail
    page = run_query(client, query_kind="object", object_id="ZTF18abvcdqu")
    assert page.status_code == 200 and page.context["results"] == []
    html = page.content.decode()
    assert said in html and "alert-danger" in html
    assert "<script>alert(1)</script>" not in html  # the remote text is escaped
    if fail == "503":
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "Fink has no alert for this search." not in html


def test_an_api_slower_than_the_timeout_is_a_message(api, client, user):
    api.fail = "slow"
    with override_settings(CACHES=LOCAL_CACHE, TOM_MMA={"FINK_API_URL": api.url, "FINK_API_TIMEOUT_S": 0.2}):
        page = run_query(client, query_kind="object", object_id="ZTF18abvcdqu")
    assert page.status_code == 200
    assert "did not answer within 0.2 s; try again later" in page.content.decode()


def test_an_api_that_cannot_be_reached_is_a_message(client, user):
    with fink_api_standin.StandIn() as stopped:
        url = stopped.url
    # the stand-in is closed: nothing listens on its port any more
    with override_settings(CACHES=LOCAL_CACHE, TOM_MMA={"FINK_API_URL": url, "FINK_API_TIMEOUT_S": 2.0}):
        page = run_query(client, query_kind="object", object_id="ZTF18abvcdqu")
    assert page.status_code == 200 and "could not be reached: ConnectionError" in page.content.decode()


# -- checks -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("setting", "value", "check_id"),
    [
        ("FINK_API_URL", "api.ztf.fink-portal.org", "tom_mma.E130"),
        ("FINK_API_URL", "ftp://api.ztf.fink-portal.org", "tom_mma.E130"),
        ("FINK_API_URL", None, "tom_mma.E130"),
        ("FINK_API_TIMEOUT_S", 0, "tom_mma.E131"),
        ("FINK_API_TIMEOUT_S", "30", "tom_mma.E131"),
        ("FINK_API_TIMEOUT_S", float("inf"), "tom_mma.E131"),
        ("FINK_API_TIMEOUT_S", True, "tom_mma.E131"),
    ],
)
def test_checks_of_the_fink_settings(settings, setting, value, check_id):
    settings.TOM_MMA = {setting: value}
    assert [e.id for e in check_fink_api()] == [check_id]


def test_the_default_fink_settings_pass_the_checks(settings):
    settings.TOM_MMA = {}
    assert check_fink_api() == []
    settings.TOM_MMA = {"FINK_API_URL": "http://127.0.0.1:8080/", "FINK_API_TIMEOUT_S": 2}
    assert check_fink_api() == []
