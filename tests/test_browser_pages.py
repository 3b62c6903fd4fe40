"""Every tom-mma page in a real headless Chromium, against the example TOM filled like the demo leaves it.

One filled database for the module (``tests.pages_data.fill`` plus the archive), one live server, one browser.
Each page is checked for what a person must see (values to their precision, the links), for no console
error, for no sideways scrolling at 1366 px, and for the candidate named ``<script>alert(1)</script>`` shown as
text; a screenshot of each is saved under ``tests/artefacts/browser/``.
"""

from __future__ import annotations

import contextlib
import json

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client

from tests.browser import ARTEFACTS, driver, horizontal_overflow, screenshot, severe_console_entries  # noqa: F401
from tests.pages_data import EVENT, XSS, fill

# django_db (not transactional): it sets the test database up; each test's transaction is only rolled back,
# so the module's data, committed by the fixture below, stay for every test and the live server sees them
pytestmark = [pytest.mark.browser, pytest.mark.django_db]


@pytest.fixture(scope="module")
def site(django_db_setup, django_db_blocker, driver):  # noqa: F811
    """The filled TOM behind a live server, the browser logged in as a superuser; emptied afterwards.

    pytest-django's own ``LiveServer``, started here rather than through its ``live_server`` fixture: that
    fixture makes every test transactional, which empties the database after each one (and the module would
    fill it again for every page).
    """
    from pytest_django.live_server_helper import LiveServer

    from tests import handlers
    from tom_mma_broker.ingest import Envelope, Ingestor
    from tom_mma_broker.models import QuarantinedAlert

    with django_db_blocker.unblock():
        # no test transaction here: on_commit callbacks run at once, as in the stream
        data = fill(lambda execute: contextlib.nullcontext())
        notice = json.dumps({"superevent_id": EVENT, "alert_type": "PRELIMINARY"}).encode()
        Ingestor({"t.gw": None, "t.phot": handlers.record}).ingest(
            [
                Envelope(topic="t.gw", payload=notice, partition=0, offset=3),
                Envelope(topic="t.gw", payload=notice + b" ", origin="alerts/notice.json"),
                Envelope(topic="t.phot", payload=json.dumps({"seq": 1, "poison": True, "object_name": XSS}).encode(),
                         partition=0, offset=9),
            ]
        )  # fmt: skip
        data["quarantined"] = QuarantinedAlert.objects.get()
        user = User.objects.create_superuser("browser", "browser@example.org", "pw")
        client = Client()
        client.force_login(user)
        server = LiveServer("localhost")
    try:
        driver.get(server.url + "/robots.txt")
        cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
        driver.add_cookie({"name": settings.SESSION_COOKIE_NAME, "value": cookie})
        severe_console_entries(driver)
        yield {"url": server.url, **data}
    finally:
        server.stop()
        with django_db_blocker.unblock():
            call_command("flush", interactive=False, verbosity=0)


def visit(driver, site, path: str, name: str) -> str:  # noqa: F811
    """Open a page; check the console, the width and the escaping; save a screenshot; return its text."""
    from selenium.common.exceptions import NoAlertPresentException

    driver.get(site["url"] + path)
    assert driver.execute_script("return document.readyState") == "complete"
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert  # noqa: B018 - an alert(1) would mean the candidate's name ran as script
    screenshot(driver, name)
    errors = severe_console_entries(driver)
    (ARTEFACTS / f"{name}.console.txt").write_text("\n".join(errors))
    assert errors == [], name
    assert horizontal_overflow(driver) <= 0, f"{name} scrolls sideways"
    return driver.find_element("tag name", "body").text


def test_home_page(driver, site):  # noqa: F811
    text = visit(driver, site, "/", "home")
    assert "Multi-messenger overview" in text and XSS in text
    link = driver.find_element("css selector", f'#tom-mma-home-events a[href="/gw/{EVENT}/"]')
    assert link.text == EVENT
    alerts = driver.find_element("id", "tom-mma-home-alerts").text
    assert "0.910" in alerts and "0.420" in alerts
    assert "Not listening" in driver.find_element("id", "tom-mma-home-streams").text
    transients = driver.find_element("id", "tom-mma-home-transients")
    assert {a.get_attribute("href").split("/gw/")[1] for a in transients.find_elements("tag name", "a")} == {
        f"transients/{t.pk}/" for t in site["transients"]
    }
    nav = driver.find_element("css selector", "nav").text
    assert "MMA" in nav and "GW events" in nav and "Streams" in nav


def test_gw_event_pages(driver, site):  # noqa: F811
    assert EVENT in visit(driver, site, "/gw/", "gw-event-list")
    text = visit(driver, site, f"/gw/{EVENT}/", "gw-event")
    assert "AT-best" in text and XSS in text
    width = driver.execute_script(
        "const i = document.querySelector('img[src$=\"skymap.png\"]'); return i.complete ? i.naturalWidth : 0"
    )
    assert width > 800
    # values to their precision: areas to 0.1 deg², positions to 1e-5 deg, levels to 0.001
    assert "50%: 8.9 deg² · 90%: 31.0 deg²" in text and "194.30420" in text and "0.262" in text
    for t in site["transients"]:
        assert (t.name or t.event_id) in visit(driver, site, f"/gw/transients/{t.pk}/", f"transient-{t.source}")
    from tom_mma.display import status_of

    assert site["record"] is not None and status_of(site["record"]).label in text


def test_target_page_with_the_score_plot_and_photometry(driver, site):  # noqa: F811
    visit(driver, site, f"/targets/{site['best'].pk}/", "target")
    tab = driver.find_element("xpath", "//a[contains(., 'Kilonova score')] | //button[contains(., 'Kilonova score')]")
    tab.click()
    plot = driver.find_element("id", "tom-mma-lightcurve")
    assert driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", plot) > 300
    history = driver.find_element("id", "tom-mma-score-history")
    assert history.find_element("link text", EVENT).get_attribute("href").endswith(f"/gw/{EVENT}/")
    assert horizontal_overflow(driver) <= 0
    screenshot(driver, "target-score-tab")
    photometry = driver.find_element("id", "photData").get_attribute("textContent")
    assert "22.38" in photometry and "22.3838" not in photometry and "0.05" in photometry
    assert severe_console_entries(driver) == []


def test_observation_pages_use_the_one_status_vocabulary(driver, site):  # noqa: F811
    from tom_mma.display import status_of

    record = site["record"]
    label = status_of(record).label
    assert label in visit(driver, site, "/observations/list/", "observation-list")
    assert f"Status: {label}" in visit(driver, site, f"/observations/{record.pk}/", "observation")


def test_markup_in_a_name_is_text_on_its_target_page(driver, site):  # noqa: F811
    text = visit(driver, site, f"/targets/{site['xss'].pk}/", "target-xss")
    assert XSS in text


def test_stream_health_page(driver, site):  # noqa: F811
    text = visit(driver, site, "/streams/health/", "stream-health")
    assert "Not listening" in text
    table = driver.find_element("id", "tom-mma-stream-health").text
    assert "t.gw" in table and "t.phot" in table


def test_archive_and_quarantine_in_the_admin(driver, site):  # noqa: F811
    text = visit(driver, site, "/admin/tom_mma_broker/archivedalert/", "archive-list")
    assert EVENT in text and XSS in text and "file replay as t.gw" in text and "[None]@None" not in text
    # the received time is shown whole, not clipped by the list's scrolling box
    clipped = driver.execute_script(
        "const box = document.querySelector('#changelist .results').getBoundingClientRect();"
        "return [...document.querySelectorAll('td.field-received_at, th.column-received_at')]"
        ".filter(c => c.getBoundingClientRect().right > box.right + 1).length"
    )
    assert clipped == 0
    for cell in driver.find_elements("css selector", "td.field-received_at"):
        assert len(cell.text) == len("2026-12-03 09:01:20")
    text = visit(driver, site, f"/admin/tom_mma_broker/quarantinedalert/{site['quarantined'].pk}/change/",
                 "quarantine-detail")  # fmt: skip
    pre = next(p.text for p in driver.find_elements("css selector", "pre") if "Traceback" in p.text)
    assert "poison message 1" in pre and "\n    " in pre


@pytest.mark.parametrize(
    "path",
    [
        "/api/mma/gw-events/",
        f"/api/mma/gw-events/{EVENT}/",
        f"/api/mma/gw-events/{EVENT}/candidates/",
        "/api/mma/gw-notices/",
        "/api/mma/gw-candidates/",
        "/api/mma/derived-alerts/",
        "/api/mma/triggers/",
        "/api/mma/transients/",
        "/api/mma/links/",
        "/api/mma-broker/archive/",
        "/api/mma-broker/quarantine/",
        "/api/mma-broker/candidates/",
        "/api/mma-broker/classifications/",
    ],
)
def test_the_api_in_the_browser(driver, site, path):  # noqa: F811
    """The REST API's own pages (DRF's browsable API): the data, the candidate's markup as text, no errors."""
    name = "api" + path.replace("/api", "").replace("/", "-").rstrip("-")
    text = visit(driver, site, path, name)
    assert '"count"' in text or '"results"' in text or '"next"' in text or '"superevent_id"' in text, name
    if "gw-events" in path or "derived" in path:
        assert EVENT in text
    if path.endswith(("derived-alerts/", f"{EVENT}/candidates/")):
        assert XSS in text  # shown as the text it is, inside the JSON


def test_the_archive_data_service_form_and_results(driver, site):  # noqa: F811
    """tomtoolkit 3's Data Services: the MMA-Archive form sent from the browser, its results, the markup as text."""
    from django.test import override_settings
    from django.urls import reverse

    # tom_dataservices' result page clears the whole cache: a cache of this process's own
    local = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "browser-ds"}}
    with override_settings(CACHES=local):
        form = reverse("tom_dataservices:create") + "?data_service=MMA-Archive"
        text = visit(driver, site, form, "dataservice-archive-form")
        assert "MMA-Archive Query Form" in text and "Inside the region of GW event" in text
        driver.find_element("id", "id_gw_event").send_keys(EVENT)
        # the Run button (with its formaction), pressed from script: at this window size something of
        # tomtoolkit's page overlaps it for selenium's pointer
        driver.execute_script("arguments[0].click()", driver.find_element("id", "submit-id-submit"))
        assert driver.current_url.endswith(reverse("tom_dataservices:run"))
        text = visit(driver, site, reverse("tom_dataservices:run"), "dataservice-archive-results")
    table = driver.find_element("id", "mma-archive-results").text
    assert "AT-best" in table and XSS in table and "0.910" in table and EVENT in table
    menu = driver.find_element("css selector", "nav").get_attribute("innerHTML")
    assert "data_service=MMA-Archive" in menu and "data_service=MMA-Fink" in menu
