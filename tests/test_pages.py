"""The pages' defects of issue 12, each with its test: plot, links, one status vocabulary, precision, archive."""

from __future__ import annotations

import base64
import re

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from tests.pages_data import EVENT, MAG, XSS, fill
from tom_mma.display import format_magnitude, request_status, status_of
from tom_mma.models import EventObservation

pytestmark = pytest.mark.django_db


@pytest.fixture
def filled(django_capture_on_commit_callbacks):
    return fill(django_capture_on_commit_callbacks)


@pytest.fixture
def admin_client(client):
    client.force_login(User.objects.create_superuser("admin", "admin@example.org", "pw"))
    return client


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_score_tab_plots_the_light_curve_with_the_score_and_links_the_event(admin_client, filled):
    page = admin_client.get(reverse("targets:detail", args=[filled["best"].pk])).content.decode()
    match = re.search(r'<img[^>]*id="tom-mma-lightcurve"[^>]*src="data:image/svg\+xml;base64,([^"]+)"', page)
    assert match, "the light curve is an inline SVG image"
    svg = base64.b64decode(match.group(1)).decode()
    assert "<svg" in svg and "kilonova score" in svg and "magnitude" in svg and "MJD" in svg
    table = page[page.index('id="tom-mma-score-history"') :]
    table = table[: table.index("</table>")]
    assert f'<a href="/gw/{EVENT}/">{EVENT}</a>' in table
    headers = re.findall(r"<th>([^<]*)</th>", table[: table.index("</thead>")])
    assert headers[-1] == "State" and all(headers)
    assert 'class="table-responsive"' in page[page.index("Kilonova score history") - 400 :]


def test_one_status_vocabulary_for_a_request_everywhere(admin_client, filled):
    record, trigger = filled["record"], filled["trigger"]
    assert record is not None and trigger.status == "submitted" and record.status  # the three raw words differ
    link = EventObservation.objects.get(observation_record=record)
    assert {str(status_of(record)), str(status_of(trigger)), str(status_of(link))} == {
        str(request_status(record.status))
    }
    label = str(status_of(record))
    assert label != record.status  # not the facility's upper-case word
    target_page = admin_client.get(reverse("targets:detail", args=[filled["best"].pk])).content.decode()
    rules = target_page[target_page.index('id="tom-mma-rule-requests"') :]
    assert f">{label}</span>" in rules[: rules.index("</table>")]
    # the Observations tab (the example TOM's copy of tomtoolkit's partial)
    observations = target_page[target_page.index("<th>Observation ID</th>") :]
    assert f">{label}</span>" in observations[: observations.index("</table>")]
    assert ">Submitted<" not in target_page.replace(f">{label}<", "") or label == "Submitted"
    # tomtoolkit's observation list and detail pages (the example TOM's copies)
    for url in ("/observations/list/", f"/observations/{record.pk}/"):
        page = admin_client.get(url).content.decode()
        assert f">{label}</span>" in page and f"> {record.status}<" not in page, url
    gw_page = admin_client.get(f"/gw/{EVENT}/").content.decode()
    requests = gw_page[gw_page.index("<h4>Observation requests</h4>") :]
    assert f">{label}</span>" in requests and ">Active<" not in requests


def test_request_status_after_a_retraction_and_at_the_end():
    assert str(request_status("PENDING", retraction_status="flagged")) == "Cancel by hand (event retracted)"
    assert str(request_status("COMPLETED", retraction_status="cancel_pending")) == "Completed"
    assert str(request_status(trigger_status="failed")) == "Not submitted (error)"
    assert str(request_status("WINDOW_EXPIRED")) == "Expired" and str(request_status("CANCELED")) == "Cancelled"
    assert str(request_status("SOMETHING_NEW")) == "Something new"


def test_magnitudes_to_their_precision_on_the_target_page(admin_client, filled):
    page = admin_client.get(reverse("targets:detail", args=[filled["best"].pk])).content.decode()
    shown = re.sub(r"<script.*?</script>", "", page, flags=re.S)  # tomtoolkit's plotly data are not text shown
    assert "22.38388" not in shown
    text = _text(shown)
    assert "22.38 0.05" in text  # error 0.05: two decimals
    assert "21.907 0.003" in text  # error 0.003: three decimals
    assert format_magnitude(MAG) == "22.38"


def test_markup_in_a_candidate_name_is_escaped(admin_client, filled):
    for url in (f"/gw/{EVENT}/", reverse("targets:detail", args=[filled["xss"].pk])):
        page = admin_client.get(url).content.decode()
        assert XSS not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page, url


def test_archive_list_has_subject_origin_and_an_unclipped_received_column(admin_client, tmp_path):
    import json

    from tom_mma_broker.ingest import Envelope, Ingestor

    path = tmp_path / "notice.json"
    path.write_text(json.dumps({"superevent_id": "S230518h", "alert_type": "PRELIMINARY"}))
    kafka = Envelope(topic="t.gw", payload=json.dumps({"objectId": "ZTF23abc"}).encode(), partition=0, offset=7)
    Ingestor({"t.gw": None}).ingest([Envelope.from_file(path, "t.gw"), kafka])
    page = admin_client.get(reverse("admin:tom_mma_broker_archivedalert_changelist")).content.decode()
    for column in ("subject", "origin", "received_at"):
        assert f'class="sortable column-{column}' in page or f'class="column-{column}' in page, column
    assert "Received (UTC)" in page
    assert "S230518h" in page and "ZTF23abc" in page
    assert "[None]@None" not in page and "file replay as t.gw" in page and "t.gw[0]@7" in page
    assert re.search(r'<span style="white-space: nowrap">\d{4}-\d\d-\d\d \d\d:\d\d:\d\d</span>', page)


def test_quarantine_detail_keeps_the_traceback_indentation(admin_client):
    from tests import handlers
    from tom_mma_broker.ingest import Envelope, Ingestor
    from tom_mma_broker.models import QuarantinedAlert

    Ingestor({"t.one": handlers.record}).ingest(
        [Envelope(topic="t.one", payload=b'{"seq": 1, "poison": true}', partition=0, offset=1)]
    )
    quarantined = QuarantinedAlert.objects.get()
    assert "\n    " in quarantined.traceback  # a Python traceback: indented lines
    page = admin_client.get(
        reverse("admin:tom_mma_broker_quarantinedalert_change", args=[quarantined.pk])
    ).content.decode()
    # the traceback's block (the reason has one of its own)
    blocks = [b for b in re.findall(r"<pre[^>]*>(.*?)</pre>", page, flags=re.S) if "Traceback" in b]
    assert blocks and "\n    " in blocks[0] and "poison message 1" in blocks[0]
    assert "<br>" not in blocks[0]


def test_mma_home_page_at_a_glance(admin_client, filled):
    for url in ("/", "/mma/"):
        page = admin_client.get(url).content.decode()
        assert "Multi-messenger overview" in page, url
    events = page[page.index('id="tom-mma-home-events"') :]
    events = events[: events.index("</table>")]
    assert f'<a href="/gw/{EVENT}/">{EVENT}</a>' in events
    assert events.index("AT-best") < events.index("&lt;script&gt;")  # most probable first
    alerts = page[page.index('id="tom-mma-home-alerts"') :]
    alerts = alerts[: alerts.index("</table>")]
    assert "0.910" in alerts and f'<a href="/gw/{EVENT}/">{EVENT}</a>' in alerts
    requests = page[page.index('id="tom-mma-home-requests"') :]
    assert f">{status_of(filled['record']).label}</span>" in requests[: requests.index("</ul>")]
    transients = page[page.index('id="tom-mma-home-transients"') :]
    transients = transients[: transients.index("</table>")]
    assert len(filled["transients"]) == 2
    for t in filled["transients"]:
        assert f'href="/gw/transients/{t.pk}/"' in transients and t.source in transients
    assert "Gamma rays" in transients and "Neutrinos" in transients
    streams = page[page.index('id="tom-mma-home-streams"') :]
    assert "Not listening" in streams[:2000] and "/streams/health/" in streams[:2000]
    assert XSS not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    # tomtoolkit's own pages still work, and link the MMA pages from their navbar
    targets = admin_client.get("/targets/").content.decode()
    assert 'href="/mma/"' in targets and 'href="/streams/health/"' in targets and 'href="/gw/"' in targets


def test_stream_health_service_and_page(admin_client):
    from datetime import timedelta

    from django.utils import timezone

    from tests import handlers
    from tom_mma_broker.conf import broker_settings
    from tom_mma_broker.health import record_heartbeat, stream_health
    from tom_mma_broker.ingest import Envelope, Ingestor

    envelopes = [Envelope(topic="t.one", payload=b'{"seq": %d}' % i, partition=0, offset=i) for i in range(5)]
    envelopes.append(Envelope(topic="t.one", payload=b'{"seq": 9, "poison": true}', partition=0, offset=5))
    Ingestor({"t.one": handlers.record}).ingest(envelopes)
    record_heartbeat(["t.one"], "g-health", {"t.one": 4})
    health = stream_health()
    (topic,) = health.topics
    assert health.listening and topic.listening and topic.consumer_group == "g-health"
    assert topic.consumer_lag == 4 and topic.quarantined == 1 and topic.messages == 6
    assert topic.rate_per_minute == 6 / 60 and "poison message 9" in topic.last_error
    later = stream_health(timezone.now() + timedelta(seconds=3 * broker_settings.HEALTH_HEARTBEAT_S + 3600))
    assert not later.listening and later.topics[0].rate_per_minute == 0
    page = admin_client.get("/streams/health/").content.decode()
    assert 'id="tom-mma-listening">Listening<' in page
    row = page[page.index('id="tom-mma-stream-health"') :]
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row[: row.index("</table>")], flags=re.S)
    assert [_text(c).strip() for c in cells][2:7] == ["0.10", "6", "g-health", "4", "1"]
    assert "poison message 9" in page


def test_stream_health_page_and_panel_need_a_login(client):
    response = client.get("/streams/health/")
    assert response.status_code == 302 and "login" in response["Location"]
    from tom_mma_broker.health import record_stream_error

    record_stream_error(["t.secret"], "KafkaError: broker at 10.0.0.7 down")
    home = client.get("/mma/").content.decode()
    assert "Log in to see the streams" in home and "t.secret" not in home and "10.0.0.7" not in home


@pytest.mark.parametrize("value", [0, -1.0, "30", None, True])
def test_heartbeat_setting_is_checked(settings, value):
    from tom_mma_broker.checks import check_health_heartbeat

    assert check_health_heartbeat() == []
    settings.TOM_MMA_BROKER = {**settings.TOM_MMA_BROKER, "HEALTH_HEARTBEAT_S": value}
    assert [m.id for m in check_health_heartbeat()] == ["tom_mma_broker.E040"]


@pytest.mark.parametrize(
    "name",
    [
        "tom_observations/partials/observation_list.html",
        "tom_observations/observation_list.html",
        "tom_observations/observationrecord_detail.html",
        "tom_dataproducts/partials/photometry_datalist_for_target.html",
        "tom_dataproducts/partials/recent_photometry.html",
    ],
)
def test_the_example_toms_copies_of_tomtoolkit_templates_differ_only_where_they_must(name):
    """A tomtoolkit upgrade that changes one of these templates fails here: copy it again, then redo the lines."""
    import difflib
    from importlib import import_module
    from pathlib import Path

    app = name.split("/")[0]
    original = (Path(import_module(app).__file__).parent / "templates" / name).read_text().splitlines()
    copy = (Path(__file__).parent.parent / "example_tom" / "templates" / name).read_text().splitlines()
    changed = [line for line in difflib.ndiff(original, copy) if line[:1] in "+-"]
    added = [line[2:] for line in changed if line.startswith("+")]
    removed = [line[2:] for line in changed if line.startswith("-")]
    assert added and all(("tom_mma_display" in a or "request_status" in a or "|mag" in a) for a in added)
    assert len(removed) <= 6 and all(
        any(w in r for w in ("status", "magnitude", "error", "else", "endif")) for r in removed
    )
