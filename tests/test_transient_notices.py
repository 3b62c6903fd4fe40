"""GCN JSON notices of GRBs, X-ray transients and neutrinos, and SNEWS alerts, as events (replayalerts' path)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tom_mma.models import TransientEvent, TransientNotice
from tom_mma.transients.notices import TransientNoticeError, parse_notice
from tom_mma_broker.ingest import Outcome
from tom_mma_broker.models import QuarantinedAlert
from tom_mma_broker.replay import replay_files

GCN = Path(__file__).parent / "data" / "gcn"
H = "tom_mma.handlers.gcn."
EP = "einstein_probe/wxt/alert.example.json"
LVK_NU = "icecube/lvk_nu_track_search.example.json"

pytestmark = pytest.mark.django_db


def replay(topic: str, handler: str, *files: str) -> list:
    from django.utils.module_loading import import_string

    return list(replay_files([GCN / f for f in files], topic, handlers={topic: import_string(H + handler)}))


def event(source: str) -> TransientEvent:
    return TransientEvent.objects.get(source=source)


def test_fermi_gbm_alert_flight_and_final_make_one_event_with_the_final_position():
    files = ["fermi/gbm/trigger.alert.example.json", "fermi/gbm/trigger.flight1.example.json",
             "fermi/gbm/trigger.final.example.json"]  # fmt: skip
    results = replay("gcn.notices.fermi.gbm.alert", "fermi_gbm_handler", *files)
    assert [r.outcome for r in results] == [Outcome.HANDLED] * 3
    gbm = event("fermi-gbm")
    assert (gbm.event_id, gbm.name, gbm.messenger) == ("745121685", "bn240812094", "gamma")
    assert gbm.trigger_time.isoformat() == "2024-08-24T02:14:40.430000+00:00"
    assert (gbm.ra, gbm.dec, gbm.error_radius, gbm.containment, gbm.record_number) == (29.24, -63.62, 1.0, 0.68, 7)
    assert gbm.healpix_url.endswith("glg_healpix_all_bn240812094.fit")
    assert gbm.notices.count() == 3


def test_an_older_notice_arriving_last_keeps_the_newer_figures():
    replay("gcn.notices.fermi.gbm.final", "fermi_gbm_handler", "fermi/gbm/trigger.final.example.json")
    replay("gcn.notices.fermi.gbm.alert", "fermi_gbm_handler", "fermi/gbm/trigger.flight1.example.json")
    gbm = event("fermi-gbm")
    assert (gbm.ra, gbm.error_radius, gbm.record_number) == (29.24, 1.0, 7) and gbm.notices.count() == 2


def test_swift_guano_and_its_retraction_in_either_order():
    replay("gcn.notices.swift.bat.guano", "swift_bat_guano_handler", "swift/bat/Guano.example.json",
           "swift/bat/Guano.Retraction.example.json")  # fmt: skip
    guano = event("swift-bat-guano")
    assert guano.state == "retracted" and guano.far == 0.00001 and guano.event_id == "694215995"
    TransientEvent.objects.all().delete()
    TransientNotice.objects.all().delete()
    from tom_mma.transients.events import ingest_transient_notice

    for name in ["Guano.Retraction", "Guano"]:
        ingest_transient_notice(parse_notice((GCN / f"swift/bat/{name}.example.json").read_bytes()))
    assert event("swift-bat-guano").state == "retracted"


def test_a_bad_healpix_file_is_quarantined_with_the_reason():
    (result,) = replay("gcn.notices.swift.bat.guano", "swift_bat_guano_handler", "swift/bat/guano.loc_map.example.json")
    assert result.outcome is Outcome.QUARANTINED
    assert "healpix_file is not base64" in QuarantinedAlert.objects.get().reason
    assert not TransientEvent.objects.exists()


def test_svom_einstein_probe_icecube_and_superk(settings):
    settings.TOM_MMA = {"ACCEPT_TEST_EVENTS": True}  # the SVOM example is a test trigger
    replay("gcn.notices.svom.voevent.eclairs", "svom_eclairs_handler", "svom/eclairs/trigger.slewing.example.json")
    replay("gcn.notices.einstein_probe.wxt.alert", "einstein_probe_wxt_handler", EP)
    replay("gcn.notices.icecube.gold_bronze_track_alerts", "icecube_track_handler",
           "icecube/single_neutrino_alerts.gold_bronze_track_alerts.example.json")  # fmt: skip
    replay("gcn.notices.superk.sn_alert", "superk_sn_handler", "superk/sn_alert.real.example.json",
           "superk/sn_alert.test.example.json")  # fmt: skip
    svom = event("svom-eclairs")
    assert svom.is_test and (svom.ra, svom.dec, svom.error_radius, svom.containment) == (143.2478, -68.0289, 0.1, 0.9)
    wxt = event("ep-wxt")
    assert (wxt.messenger, wxt.ra, wxt.dec, wxt.error_radius) == ("x-ray", 120.0, 40.0, 0.02)
    track = event("icecube-track")
    assert (track.name, track.messenger, track.far) == ("IceCube-230416A", "neutrino", 8.029e-8)
    assert track.properties["p_astro"] == 0.34064
    superk = TransientEvent.objects.filter(source="superk-sn").order_by("event_id")
    assert [(e.event_id, e.is_test) for e in superk] == [("SN.095001.000001", False), ("test:SN.095001.000001", True)]


def test_test_notices_are_ignored_unless_the_tom_takes_test_events():
    (result,) = replay("gcn.notices.superk.sn_alert", "superk_sn_handler", "superk/sn_alert.test.example.json")
    assert result.outcome is Outcome.HANDLED and not TransientEvent.objects.exists()


def test_icecube_lvk_track_search_names_its_superevent():
    replay("gcn.notices.icecube.lvk_nu_track_search", "icecube_lvk_nu_handler", LVK_NU)
    search = event("icecube-lvk-nu")
    assert search.superevent_id == "S230914ak" and search.properties["n_events_coincident"] == 2
    assert (search.ra, search.dec, search.error_radius) == (17.49, 16.18, 0.5)


def test_a_replay_adds_nothing_and_a_notice_on_the_wrong_handler_is_refused():
    replay("gcn.notices.einstein_probe.wxt.alert", "einstein_probe_wxt_handler", EP)
    from tom_mma.transients.events import ingest_transient_notice

    again = ingest_transient_notice(parse_notice((GCN / "einstein_probe/wxt/alert.example.json").read_bytes()))
    assert again.outcome == "duplicate" and TransientNotice.objects.count() == 1
    with pytest.raises(TransientNoticeError, match="a ep-wxt notice, where fermi-gbm was expected"):
        parse_notice((GCN / "einstein_probe/wxt/alert.example.json").read_bytes(), "fermi-gbm")


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"trigger_time": "yesterday"}, "trigger_time is not an ISO 8601"),
        ({"dec": 95}, r"dec must be in \[-90, 90\]"),
        ({"ra": None}, "ra and dec come together"),
        ({"ra_dec_error": "big"}, "ra_dec_error must be a number"),
        ({"alert_type": "maybe"}, "alert_type must be one of"),
        ({"id": []}, "id must be a non-empty"),
        ({"healpix_url": "file:///etc/passwd"}, "healpix_url must be an http"),
        ({"$schema": "https://example.org/unknown.json", "mission": "?"}, "unknown notice kind"),
    ],
)
def test_invalid_notices_are_refused_with_the_reason(change, reason):
    content = json.loads((GCN / "fermi/gbm/trigger.final.example.json").read_text())
    content.update(change)
    if change.get("ra", 0) is None:
        del content["ra"]
    with pytest.raises(TransientNoticeError, match=reason):
        parse_notice(json.dumps(content).encode())


def test_snews_alerts_of_the_decider_become_a_neutrino_event_updated_and_retracted():
    from tom_mma.handlers.gcn import snews_alert_handler
    from tom_mma_broker.snews.decider import Decider
    from tom_mma_broker.snews.messages import parse_message

    decider = Decider()
    messages = [
        {"tier": "CoincidenceTier", "detector_name": name, "neutrino_time_utc": f"2030-01-01T00:00:0{s}", "uuid": name}
        for name, s in [("Super-K", 1), ("IceCube", 3), ("KamLAND", 4)]
    ] + [
        {"tier": "Retraction", "detector_name": "KamLAND", "retract_latest_n": 1, "uuid": "r1"},
        {"tier": "Retraction", "detector_name": "IceCube", "retract_latest_n": 1, "uuid": "r2"},
    ]
    states = []
    for body in messages:
        for alert in decider.process(parse_message(body)).alerts:
            snews_alert_handler(json.loads(json.dumps(alert.to_dict())))
            nu = event("snews")
            states.append((alert.alert_type, nu.state, nu.properties["detector_names"]))
    assert states == [
        ("COINC_MSG", "active", ["Super-K", "IceCube"]),
        ("COINC_MSG", "active", ["Super-K", "IceCube", "KamLAND"]),
        ("RETRACTION", "active", ["Super-K", "IceCube"]),
        ("RETRACTION", "retracted", ["Super-K", "IceCube"]),  # quorum lost: the event is retracted
    ]
    nu = event("snews")
    assert nu.trigger_time.isoformat() == "2030-01-01T00:00:01+00:00" and nu.properties["false_alarm_prob"] > 0


SNEWS_GCN = [f"snews/alert.{kind}.example.json" for kind in ("initial", "update", "retraction")]


def test_gcn_snews_notices_become_a_neutrino_event_updated_then_retracted():
    results = replay("gcn.notices.snews2.alert", "gcn_snews_handler", *SNEWS_GCN[:2])
    assert [r.outcome for r in results] == [Outcome.HANDLED] * 2
    nu = event("snews-gcn")
    assert (nu.event_id, nu.messenger, nu.state, nu.record_number) == ("SNEWS-20300101-000001", "neutrino", "active", 2)
    assert nu.properties["detector_names"] == ["Super-K", "IceCube", "KamLAND"]
    assert nu.properties["neutrino_times"][2] == "2030-01-01T00:00:04.000000Z"
    assert (nu.properties["false_alarm_prob"], nu.far, nu.properties["p_values"][2]) == (2.2e-13, 1.4e-21, None)
    assert nu.trigger_time.isoformat() == "2030-01-01T00:00:01.250000+00:00"
    replay("gcn.notices.snews2.alert", "gcn_snews_handler", SNEWS_GCN[2])
    nu = event("snews-gcn")
    assert nu.state == "retracted" and nu.notices.count() == 3
    assert nu.properties["detector_names"] == ["Super-K", "IceCube", "KamLAND"]  # a retraction keeps the figures


def test_an_update_arriving_after_the_retraction_does_not_revive_the_event():
    replay("gcn.notices.snews2.alert", "gcn_snews_handler", SNEWS_GCN[0], SNEWS_GCN[2], SNEWS_GCN[1])
    assert event("snews-gcn").state == "retracted"


def test_the_bridge_draft_form_of_a_gcn_snews_notice_is_read_as_a_test_event(settings):
    settings.TOM_MMA = {"ACCEPT_TEST_EVENTS": True}
    (result,) = replay("gcn.notices.snews2.alert", "gcn_snews_handler", "snews/alert.bridge-draft.example.json")
    assert result.outcome is Outcome.HANDLED
    nu = event("snews-gcn")
    assert nu.is_test and nu.event_id == "test:3f1c9a2e-7d4b-4f0e-9a51-0c6a1e2b7d90" and nu.far == 1e-06
    assert nu.properties["detector_names"] == ["Super-K", "KM3NeT"] and nu.properties["p_values"] == [0.05, 0.05]
    assert nu.trigger_time.isoformat() == "2030-01-02T10:00:00.500000+00:00"


def test_superk_alerts_carry_their_detector_and_time():
    replay("gcn.notices.superk.sn_alert", "superk_sn_handler", "superk/sn_alert.real.example.json")
    superk = event("superk-sn")
    assert superk.properties["detector_names"] == ["Super-K"]
    assert superk.properties["neutrino_times"] == ["2023-08-01T00:00:01.000000Z"] and superk.messenger == "neutrino"


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"detector_names": []}, "detector_names must be a non-empty list"),
        ({"detector_names": ["Super-K", "Super-K"]}, "name each detector once"),
        ({"neutrino_times": ["2030-01-01T00:00:01Z"]}, "neutrino_times must give one time per detector"),
        ({"neutrino_times": ["2030-01-01T00:00:01Z", "soon"]}, r"neutrino_times\[1\] is not an ISO 8601"),
        ({"p_values": [0.1, 2]}, "p_values must give one p-value in"),
        ({"false_alarm_prob": -1}, "false_alarm_prob must be a non-negative number"),
        ({"far": "low"}, "far must be a non-negative number"),
        ({"id": ""}, "id must be a non-empty string"),
        ({"alert_type": "maybe"}, "alert_type must be initial"),
    ],
)
def test_invalid_gcn_snews_notices_are_refused_with_the_reason(change, reason):
    content = json.loads((GCN / SNEWS_GCN[0]).read_text())
    content.update(change)
    with pytest.raises(TransientNoticeError, match=reason):
        parse_notice(json.dumps(content).encode(), "snews-gcn")


def test_a_bad_gcn_snews_notice_is_quarantined_and_the_next_one_is_taken(tmp_path):
    content = json.loads((GCN / SNEWS_GCN[0]).read_text())
    content["neutrino_times"] = content["neutrino_times"][:1]
    (tmp_path / "1-bad.json").write_text(json.dumps(content))
    (tmp_path / "2-good.json").write_bytes((GCN / SNEWS_GCN[0]).read_bytes())
    results = replay("gcn.notices.snews2.alert", "gcn_snews_handler", tmp_path / "1-bad.json", tmp_path / "2-good.json")
    assert [r.outcome for r in results] == [Outcome.QUARANTINED, Outcome.HANDLED]
    assert "one time per detector" in QuarantinedAlert.objects.get().reason
    assert event("snews-gcn").properties["detector_names"] == ["Super-K", "IceCube"]


def test_doctests_of_the_neutrino_notices():
    import doctest

    from tom_mma.transients import neutrinos

    result = doctest.testmod(neutrinos)
    assert result.attempted > 0 and result.failed == 0
