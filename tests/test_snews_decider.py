"""The SNEWS 2.0 coincidence decider, rule by rule (pure: no database, no Kafka)."""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path

import pytest

from tom_mma_broker.snews.decider import Decider
from tom_mma_broker.snews.messages import SnewsMessageError, parse_message, parse_time_ns
from tom_mma_broker.snews.stats import false_alarm_figure

DATA = Path(__file__).parent / "data" / "snews"
T0 = "2030-01-01T12:34:"


def msg(detector: str, seconds: float, p_val: float = 0.1, **extra) -> dict:
    """A coincidence-tier message at 12:34:<seconds> (SNEWS 2.0 JSON form)."""
    whole, frac = divmod(round(seconds * 1_000_000), 1_000_000)
    minute, second = divmod(int(whole), 60)
    time = f"2030-01-01T12:{34 + minute:02d}:{second:02d}.{frac:06d}"
    body = {"tier": "CoincidenceTier", "detector_name": detector, "neutrino_time_utc": time, "p_val": p_val}
    body.setdefault("uuid", f"{detector}-{seconds}-{extra.pop('n', 0)}")
    body.update(extra)
    return body


def run(decider: Decider, *messages: dict, arrival: float | None = None):
    """Feed messages; each arrives at 12:35:00 + its index (unless ``arrival``): the alerts of each."""
    out = []
    base = parse_time_ns("2030-01-01T12:35:00")
    for i, body in enumerate(messages):
        at = base + (i if arrival is None else arrival) * 10**9
        out.append(decider.process(parse_message(body), arrival_ns=int(at)))
    return out


def types(decision) -> list[tuple[str, int, list[str]]]:
    return [(a.alert_type, a.sub_list_number, list(a.detector_names)) for a in decision.alerts]


# -- messages -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["coincidence_tier", "significance_tier", "timing_tier", "heartbeat", "combined"])
def test_the_snews_example_messages_parse(name):
    raw = json.loads((DATA / f"example_{name}_message.json").read_text())
    message = parse_message(raw)
    assert message.detector_name == raw["detector_name"]
    assert message.lane == "test"  # every example says "is_test": "True"
    assert message.tier == ("Heartbeat" if name == "heartbeat" else "CoincidenceTier")


def test_a_pickled_payload_is_refused_without_unpickling():
    class Bomb:
        def __reduce__(self):  # unpickling this would raise: it must never happen
            return (exec, ("raise SystemExit('unpickled')",))

    with pytest.raises(SnewsMessageError, match="Python pickle"):
        parse_message(pickle.dumps(Bomb()))
    with pytest.raises(SnewsMessageError, match="Python pickle"):
        parse_message(pickle.dumps({"detector_name": "XENONnT"}, protocol=0))


@pytest.mark.parametrize(
    "body, reason",
    [
        ({"tier": "CoincidenceTier", "detector_name": "X"}, "needs neutrino_time_utc"),
        ({"tier": "CoincidenceTier", "detector_name": "X", "neutrino_time_utc": "yesterday"}, "not an ISO"),
        ({"tier": "CoincidenceTier", "detector_name": "X", "neutrino_time_utc": "2030-02-30T00:00:00"}, "valid date"),
        ({**msg("X", 1), "p_val": 1.5}, r"p_val must be in \[0, 1\]"),
        ({**msg("X", 1), "is_test": "maybe"}, "is_test must be a boolean"),
        ({"tier": "Heartbeat", "detector_name": "X", "detector_status": "SLEEPING"}, "ON or OFF"),
        ({"tier": "Retraction", "detector_name": "X"}, "retract_message_uuid or retract_latest_n"),
        ({"tier": "Retraction", "detector_name": "X", "retract_latest_n": 1, "retract_message_uuid": "u"}, "cannot"),
        ({"tier": "Nonsense", "detector_name": "X"}, "unknown tier"),
        ({"tier": "CoincidenceTier", "neutrino_time_utc": "2030-01-01T00:00:00"}, "detector_name"),
        ([1, 2], "JSON object"),
    ],
)
def test_invalid_messages_are_refused_with_the_reason(body, reason):
    with pytest.raises(SnewsMessageError, match=reason):
        parse_message(json.dumps(body).encode())


def test_the_examples_agree_with_the_snews_data_formats_schemas_where_the_schemas_apply():
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((DATA / "schema" / "CoincidenceTierMessage.schema.json").read_text())
    good = msg("XENONnT", 1.0)
    jsonschema.validate(good, schema)
    parse_message(good)
    bad = {**good, "p_val": 2.0}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)
    with pytest.raises(SnewsMessageError):
        parse_message(bad)


# -- the rules ------------------------------------------------------------------------------------------
def test_two_detectors_within_the_window_make_a_coincidence():
    first, second = run(Decider(), msg("XENONnT", 45.678999), msg("DS-20K", 47.678999))
    assert first.action == "initial" and not first.alerts and first.no_coincidence is not None
    assert types(second) == [("COINC_MSG", 0, ["XENONnT", "DS-20K"])]
    alert = second.alerts[0]
    assert alert.neutrino_times == ("2030-01-01T12:34:45.678999000", "2030-01-01T12:34:47.678999000")
    assert alert.p_values == (0.1, 0.1) and alert.p_values_average == 0.1
    assert alert.id.startswith("SNEWS_Coincidence_ALERT ")


def test_exactly_the_window_is_in_and_just_past_it_is_out():
    at_edge = run(Decider(), msg("XENONnT", 45.678999), msg("DUNE", 55.678999))[1]
    assert types(at_edge) == [("COINC_MSG", 0, ["XENONnT", "DUNE"])]
    past = run(Decider(), msg("XENONnT", 45.678999), msg("DUNE", 55.679))[1]
    assert not past.alerts and past.no_coincidence.reason == "new sub-group"


def test_the_window_is_configurable():
    d = Decider(window_s=2.0)
    assert not run(d, msg("A", 0), msg("B", 3))[1].alerts
    assert types(run(Decider(window_s=5.0), msg("A", 0), msg("B", 3))[1]) == [("COINC_MSG", 0, ["A", "B"])]


def test_a_message_joins_every_sub_group_whose_earliest_time_is_within_the_window():
    d = Decider()
    out = run(d, msg("A", 0), msg("B", 12), msg("C", 8))
    # C (8 s) joins A's group (0 s); a message that joins a group opens none (C is not put with B)
    assert types(out[2]) == [("COINC_MSG", 0, ["A", "C"])]
    out = run(d, msg("D", 9), msg("E", 13))
    assert types(out[0]) == [("COINC_MSG", 0, ["A", "C", "D"])]
    assert types(out[1]) == [("COINC_MSG", 1, ["B", "E"])]  # 13 s is past A's window, 1 s after B
    assert d.groups() == {0: ["A", "C", "D"], 1: ["B", "E"]}


def test_an_earlier_message_arriving_late_re_anchors_and_is_staggered():
    d = Decider()
    out = run(d, msg("A", 10), msg("B", 7))
    assert types(out[1]) == [("COINC_MSG_STAGGERED", 2, ["B", "A"])]
    assert d.groups() == {0: ["A"], 2: ["B", "A"]}


def test_a_message_that_fits_no_group_opens_groups_before_and_after_it():
    d = Decider()
    out = run(d, msg("A", 0), msg("B", 20), msg("C", 15))
    # C: A is 15 s before (out), B 5 s after: early [C] repeats nothing but is a single new message...
    # C: A is 15 s before (out of the window), B 5 s after: the group after it is [C, B] (number 3, staggered);
    # the group before it would be [C] alone, a repeat of a message now cached: dropped
    assert types(out[2]) == [("COINC_MSG_STAGGERED", 3, ["C", "B"])]
    assert d.groups() == {0: ["A"], 1: ["B"], 3: ["C", "B"]}


def test_out_of_order_messages_are_placed_by_their_neutrino_time():
    d = Decider()
    out = run(d, msg("DUNE", 55.678999), msg("DS-20K", 47.678999), msg("XENONnT", 45.678999))
    assert types(out[1]) == [("COINC_MSG_STAGGERED", 2, ["DS-20K", "DUNE"])]
    assert types(out[2]) == [("COINC_MSG_STAGGERED", 3, ["XENONnT", "DS-20K", "DUNE"])]


def test_a_new_sub_group_never_takes_a_number_in_use():
    d = Decider()
    run(d, msg("A", 10), msg("B", 7))  # groups 0 and 2 (group 1, [B] alone, was a repeat)
    out = run(d, msg("C", -4))  # 14 s before A, 11 s before B: alone; snews-cs would number it 2 = count
    assert not out[0].alerts
    assert d.groups() == {0: ["A"], 2: ["B", "A"], 3: ["C"]}


def test_a_repeat_from_the_same_detector_is_an_update_not_a_new_coincidence():
    d = Decider()
    out = run(d, msg("A", 0), msg("B", 2, p_val=0.2), msg("B", 3, p_val=0.05, n=1))
    assert types(out[2]) == [("UPDATE", 0, ["A", "B"])]
    alert = out[2].alerts[0]
    assert alert.p_values == (0.1, 0.05) and alert.neutrino_times[1].endswith("12:34:03.000000000")
    assert d.groups() == {0: ["A", "B"]}  # one message per detector


def test_a_repeat_of_a_lone_message_publishes_nothing():
    out = run(Decider(), msg("JUNO", 55.678999), msg("JUNO", 56.678999, n=1))
    assert not out[1].alerts and out[1].action == "update"


def test_a_repeat_outside_every_window_changes_nothing():
    d = Decider()
    out = run(d, msg("A", 0), msg("B", 2), msg("B", 30, n=1))
    assert not out[2].alerts and out[2].action == "update outside the window"
    assert d.groups() == {0: ["A", "B"]}


def test_the_same_message_twice_is_a_duplicate():
    d = Decider()
    body = msg("XENONnT", 45.678999)
    out = run(d, body, body)
    assert out[1].action == "duplicate" and not out[1].alerts


def test_a_retraction_of_the_latest_message_retracts_the_coincidence():
    d = Decider()
    retraction = {"tier": "Retraction", "detector_name": "B", "retract_latest_n": 1, "uuid": "r1"}
    out = run(d, msg("A", 0), msg("B", 2), retraction)
    assert types(out[2]) == [("RETRACTION", 0, ["A"])]
    assert d.groups() == {0: ["A"]}


def test_a_retraction_by_message_id_and_of_a_lone_message():
    d = Decider()
    out = run(
        d,
        msg("A", 0),
        msg("B", 30),
        {"tier": "Retraction", "detector_name": "B", "retract_message_uuid": "B-30-0", "uuid": "r"},
        {"tier": "Retraction", "detector_name": "A", "retract_message_uuid": "not-cached", "uuid": "r2"},
    )
    assert out[2].action == "retraction" and not out[2].alerts  # B stood alone: no coincidence lost
    assert out[3].action == "retraction of nothing cached"
    assert d.groups() == {0: ["A"]}


def test_a_three_fold_coincidence_losing_one_detector_is_retracted_once():
    d = Decider()
    retraction = {"tier": "Retraction", "detector_name": "C", "retract_latest_n": 1, "uuid": "r"}
    out = run(d, msg("A", 0), msg("B", 2), msg("C", 4), retraction)
    assert [a.id.split()[0] for a in out[2].alerts] == ["SNEWS_Coincidence_ALERT-UPDATE"]
    assert types(out[3]) == [("RETRACTION", 0, ["A", "B"])]


def test_messages_expire_after_the_cache_time():
    d = Decider(expiry_s=120)
    run(d, msg("A", 0), arrival=0)
    late = run(d, msg("B", 2), arrival=121)[0]
    assert not late.alerts and d.groups() == {0: ["B"]}
    d = Decider(expiry_s=300)
    run(d, msg("A", 0), arrival=0)
    assert types(run(d, msg("B", 2), arrival=121)[0]) == [("COINC_MSG", 0, ["A", "B"])]


def test_expiry_is_silent_and_the_smaller_group_is_the_new_reference():
    d = Decider(expiry_s=60)
    run(d, msg("A", 0), arrival=0)
    run(d, msg("B", 2), arrival=50)
    out = run(d, msg("C", 3), arrival=70)[0]  # A expired at 60 s: no RETRACTION, C joins [B]
    assert types(out) == [("COINC_MSG", 0, ["B", "C"])]


def test_test_and_fire_drill_messages_stay_in_their_lanes():
    d = Decider()
    out = run(
        d,
        msg("A", 0),
        msg("B", 1, is_test=True),
        msg("C", 2, is_firedrill=True),
        msg("D", 3, is_test="True"),
        msg("E", 4, is_firedrill=True),
    )
    assert not out[1].alerts and not out[2].alerts
    assert types(out[3]) == [("TEST COINC_MSG", 0, ["B", "D"])]
    assert out[3].alerts[0].false_alarm_prob is None and out[3].alerts[0].lane == "test"
    assert types(out[4]) == [("FIREDRILL COINC_MSG", 0, ["C", "E"])]
    assert d.groups("observation") == {0: ["A"]}


def test_the_false_alarm_figure_is_the_one_snews_cs_computes():
    d = Decider()
    heartbeats = [{"tier": "Heartbeat", "detector_name": n, "detector_status": "ON", "uuid": n} for n in "ABCDEFGH"]
    out = run(d, *heartbeats, msg("A", 0), msg("B", 2))
    figure = out[-1].alerts[0].false_alarm_prob
    # snews-cs: (C(n, r) + 1) * (1/week)**r * 10**(r - 1) per second, inverted, in years; n = 8, r = 2
    expected = 31_556_926 / ((28 + 1) * (1 / 604_800) ** 2 * 10)
    assert math.isclose(figure, expected, rel_tol=1e-12)
    assert math.isclose(false_alarm_figure(["A", "B"], 1), 31_556_926 / ((0 + 1) * 604_800**-2 * 10), rel_tol=1e-12)
    rarer = false_alarm_figure(["A", "B"], 8, rates_per_s={"A": 1 / (4 * 604_800)})
    assert math.isclose(rarer / expected, 4.0, rel_tol=1e-12)


def test_the_state_round_trips_and_the_rebuilt_decider_goes_on_identically():
    first = Decider()
    run(first, msg("A", 0), msg("B", 12), msg("C", 8))
    rebuilt = Decider.from_state(json.loads(json.dumps(first.to_state())))
    assert rebuilt.groups() == first.groups()
    next_a = run(first, msg("D", 13))[0]
    next_b = run(rebuilt, msg("D", 13))[0]
    assert [a.to_dict() for a in next_a.alerts] == [a.to_dict() for a in next_b.alerts]
    assert next_a.alerts[0].alert_id == next_b.alerts[0].alert_id


def test_the_snews_data_formats_mock_scenarios():
    scenarios = {s["id"]: s["events"] for s in json.loads((DATA / "coincidence_scenarios.json").read_text())}
    results = {}
    for name, events in scenarios.items():
        d = Decider()
        bodies = [
            {"detector_name": e["detector_name"], "neutrino_time_utc": e["neutrino_time"], "p_val": e["p_val"],
             "is_test": e["is_test"], "uuid": f"{name}-{i}"}
            for i, e in enumerate(events)
        ]  # fmt: skip
        results[name] = [types(decision) for decision in run(d, *bodies)]
    assert results["simple-coincidence"][1] == [("TEST COINC_MSG", 0, ["XENONnT", "DS-20K"])]
    assert results["exact-10s-coincidence"][1] == [("TEST COINC_MSG", 0, ["XENONnT", "DUNE"])]
    two = results["two-coincidences"]
    assert two[1] == [("TEST COINC_MSG", 0, ["XENONnT", "DS-20K"])]
    # JUNO (4 min earlier) stands alone in group 1; Baksan 3 s before it: groups 2 ([Baksan], dropped as
    # a repeat of a cached single message) and 3 ([Baksan, JUNO], staggered)
    assert two[3] == [("TEST COINC_MSG_STAGGERED", 3, ["Baksan", "JUNO"])]
    assert results["same-message-submitted-twice"] == [[], []]
    assert results["same-detector-submits-within-1sec"] == [[], []]
    last = results["msg-at-10-19-21-22-20-29-18-seconds"]
    assert sum(len(step) for step in last) >= 5


def test_a_sub_group_keeps_its_group_id_through_updates_and_retractions():
    d = Decider()
    retraction = {"tier": "Retraction", "detector_name": "C", "retract_latest_n": 1, "uuid": "r"}
    out = run(d, msg("A", 0), msg("B", 2), msg("B", 3, n=1), msg("C", 4), retraction)
    ids = {a.group_id for decision in out for a in decision.alerts}
    assert len(ids) == 1 and ids != {""}
    again = run(Decider(), msg("A", 0, n=9), msg("B", 2))  # another coincidence: another id
    assert again[1].alerts[0].group_id not in ids
