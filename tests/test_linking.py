"""The multi-messenger linker: GW170817 x GRB 170817A, IceCube's LVK track search, transients together."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.test import override_settings

from tom_mma.gw.events import ingest_notice
from tom_mma.gw.notices import parse_avro
from tom_mma.linking import circle_probability, link_transient
from tom_mma.models import EventLink, GWEvent, TransientEvent
from tom_mma.transients.events import ingest_transient_notice
from tom_mma.transients.notices import parse_notice
from tom_mma_broker.gw170817.grb import build_grb_notice
from tom_mma_broker.gw170817.notice import build_notice, gw170817_skymap

GCN = Path(__file__).parent / "data" / "gcn"

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture
def gw170817(settings):
    settings.TOM_MMA = {"ACCEPT_MOCK_EVENTS": True}
    ingest_notice(parse_avro(build_notice(gw170817_skymap())))
    return GWEvent.objects.get(superevent_id="MS170817a")


def test_gw170817_and_grb170817a_are_linked_about_two_seconds_apart(gw170817):
    result = ingest_transient_notice(parse_notice(build_grb_notice(), "fermi-gbm"))
    (link,) = EventLink.objects.all()
    assert link.gw_event == gw170817 and link.second_id == result.event_pk
    assert link.basis == "time+space" and link.dt == pytest.approx(2.026, abs=1e-3)
    assert 0 <= link.score <= 1 and link.overlap > 0
    # the same circle elsewhere on the sky agrees less with the GW map
    skymap = gw170817.skymap
    from tom_mma.gw.skymaps import read_multiorder

    gw_map = read_multiorder(bytes(skymap.fits))
    here = circle_probability(gw_map, 176.8, -39.8, 11.6, 0.68)
    antipode = circle_probability(gw_map, 356.8, 39.8, 11.6, 0.68)
    assert here.overlap > antipode.overlap and here.probability >= antipode.probability
    # the GW source's own position, in a small circle: a far better match
    at_source = circle_probability(gw_map, 197.45, -23.38, 2.0, 0.9)
    assert at_source.overlap > 10 * here.overlap and at_source.probability > here.probability


def test_a_grb_outside_the_window_is_not_linked_and_a_wider_window_links_it(gw170817):
    late = {**build_grb_notice(), "trigger_time": "2017-08-17T12:41:20Z"}  # 15.6 s after the merger
    result = ingest_transient_notice(parse_notice(late))
    assert not EventLink.objects.exists()
    with override_settings(TOM_MMA={"ACCEPT_MOCK_EVENTS": True, "LINK_GW_WINDOWS_S": {"gamma": [-1, 30]}}):
        (link,) = link_transient(result.event_pk)
    assert link.dt == pytest.approx(15.556, abs=1e-3)


def test_a_gw_notice_after_the_grb_links_them_too(settings):
    settings.TOM_MMA = {"ACCEPT_MOCK_EVENTS": True}
    ingest_transient_notice(parse_notice(build_grb_notice()))
    assert not EventLink.objects.exists()
    ingest_notice(parse_avro(build_notice(gw170817_skymap())))  # linked on the GW notice's commit
    (link,) = EventLink.objects.all()
    assert link.gw_event.superevent_id == "MS170817a" and link.score is not None


def test_icecube_lvk_track_search_is_linked_by_the_superevent_it_names(settings):
    settings.TOM_MMA = {"ACCEPT_MOCK_EVENTS": True}
    ingest_notice(parse_avro(build_notice(gw170817_skymap())))
    search = json.loads((GCN / "icecube/lvk_nu_track_search.example.json").read_text())
    search.update(ref_ID="MS170817a", trigger_time="2017-08-20T00:00:00Z")  # days later: named, not timed
    ingest_transient_notice(parse_notice(search))
    (link,) = EventLink.objects.all()
    assert link.basis == "named" and link.gw_event.superevent_id == "MS170817a" and link.dt > 86400


def test_two_transients_close_in_time_are_linked_and_a_retraction_unlinks():
    gbm = json.loads((GCN / "fermi/gbm/trigger.final.example.json").read_text())
    swift = json.loads((GCN / "swift/bat/Guano.example.json").read_text())
    swift.update(trigger_time="2024-08-24T02:14:43.43Z", ra=29.0, dec=-63.0, ra_dec_error=0.1)
    ingest_transient_notice(parse_notice(gbm))
    ingest_transient_notice(parse_notice(swift))
    (link,) = EventLink.objects.all()
    assert (link.first.source, link.second.source) == ("fermi-gbm", "swift-bat-guano")
    assert link.dt == pytest.approx(3.0) and 0 < link.score <= 1
    retraction = json.loads((GCN / "swift/bat/Guano.Retraction.example.json").read_text())
    ingest_transient_notice(parse_notice(retraction))
    assert TransientEvent.objects.get(source="swift-bat-guano").state == "retracted"
    assert not EventLink.objects.exists()


def test_a_link_is_queued_once_as_a_derived_alert(gw170817):
    import json as _json

    from tom_mma_broker.models import OutboxMessage

    ingest_transient_notice(parse_notice(build_grb_notice()))
    (row,) = OutboxMessage.objects.filter(kind="link")
    alert = _json.loads(bytes(row.payload))
    assert row.topic == "tom-mma.links" and alert["schema"] == "tom-mma/link-alert/v1"
    assert alert["first"]["id"] == "MS170817a" and alert["second"]["name"] == "bn170817529"
    assert alert["dt_s"] == pytest.approx(2.026, abs=1e-3)
    from tom_mma.linking import link_gw_event

    link_gw_event(gw170817.pk)  # nothing changed: no second alert
    assert OutboxMessage.objects.filter(kind="link").count() == 1


def test_the_replay_can_send_grb170817a_too():
    from tom_mma_broker.gw170817 import replay_messages

    plain, with_grb = replay_messages(), replay_messages(grb=True)
    assert len(with_grb) == len(plain) + 1
    (grb,) = [m for m in with_grb if m.stream == "grb"]
    assert grb.format == "json" and grb.content["trigger_time"] == "2017-08-17T12:41:06.47Z"
    assert dict(grb.headers)["x-tom-mma-replay"] == b"GW170817"
    assert [m.stream for m in with_grb[:3]] == ["grb", "gw", "gw"]


@pytest.mark.urls("tests.test_gw_views")
def test_a_link_shows_on_both_events_pages(gw170817, client):
    from django.contrib.auth.models import User
    from tom_targets.models import Target

    for name, ra, dec in [("near-ngc4993", 197.45, -23.38), ("north-of-it", 197.0, -19.0)]:
        Target.objects.create(name=name, type="SIDEREAL", ra=ra, dec=dec, permissions="PUBLIC")
    result = ingest_transient_notice(parse_notice(build_grb_notice()))
    client.force_login(User.objects.create_user("astronomer"))
    gw_page = client.get(f"/gw/{gw170817.superevent_id}/").content.decode()
    assert "Multi-messenger links" in gw_page and "bn170817529" in gw_page and "Δt 2.03 s" in gw_page
    joint = gw_page.split("Candidates by the joint localization")[1].split("<h4>")[0]
    assert "near-ngc4993" in joint and "north-of-it" in joint
    grb_page = client.get(f"/gw/transients/{result.event_pk}/").content.decode()
    assert "MS170817a" in grb_page and "Δt 2.03 s" in grb_page and "RA 176.8000°" in grb_page


@pytest.mark.parametrize(
    "override, fragment",
    [
        ({"LINK_GW_WINDOWS_S": {"gamma": [5, -1]}}, "LINK_GW_WINDOWS_S']['gamma'] must be [low, high]"),
        ({"LINK_GW_WINDOWS_S": {"gamma": [0]}}, "must be [low, high]"),
        ({"LINK_GW_WINDOWS_S": [1, 2]}, "must map sources or messengers"),
        ({"LINK_TRANSIENT_WINDOW_S": -1}, "LINK_TRANSIENT_WINDOW_S'] must be a non-negative"),
    ],
)
def test_check_e070_refuses_bad_link_windows(settings, override, fragment):
    from tom_mma.checks_linking import check_link_windows

    assert check_link_windows() == []
    settings.TOM_MMA = override
    (error,) = check_link_windows()
    assert error.id == "tom_mma.E080" and fragment in error.msg
