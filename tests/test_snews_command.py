"""``snewsdecide``: files of SNEWS messages through the decider offline, alerts printed."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from tests.test_snews_decider import DATA


def run(*args) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("snewsdecide", *map(str, args), stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_a_json_list_prints_one_json_alert_per_line(tmp_path):
    scenarios = {s["id"]: s["events"] for s in json.loads((DATA / "coincidence_scenarios.json").read_text())}
    messages = [{"detector_name": e["detector_name"], "neutrino_time_utc": e["neutrino_time"], "p_val": e["p_val"],
                 "is_test": e["is_test"]} for e in scenarios["three-coincident-messages-out-of-order"]]  # fmt: skip
    path = tmp_path / "three.json"
    path.write_text(json.dumps(messages))
    out, err = run(path, "--json")
    alerts = [json.loads(line) for line in out.splitlines()]
    assert not err
    assert [(a["alert_type"], a["detector_names"], a["sub_list_number"]) for a in alerts] == [
        ("TEST COINC_MSG_STAGGERED", ["DS-20K", "DUNE"], 2),
        ("TEST COINC_MSG_STAGGERED", ["XENONnT", "DS-20K", "DUNE"], 3),
    ]
    assert alerts[1]["neutrino_times"][0] == "2030-01-01T12:34:45.678999000"


def test_json_lines_with_a_bad_message_and_a_narrower_window(tmp_path):
    lines = [
        {"tier": "CoincidenceTier", "detector_name": "A", "neutrino_time_utc": "2030-01-01T00:00:00", "uuid": "a"},
        {"tier": "CoincidenceTier", "detector_name": "B", "neutrino_time_utc": "2030-01-01T00:00:04", "uuid": "b"},
        {"tier": "CoincidenceTier", "detector_name": "C", "p_val": 3, "neutrino_time_utc": "2030-01-01T00:00:01"},
    ]
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    out, err = run(path)
    assert out.splitlines()[0].startswith("COINC_MSG sub-list 0: A 2030-01-01T00:00:00.000000000, B")
    assert "line 3: invalid: p_val must be in [0, 1]" in err
    out, _ = run(path, "--window", "2", "--no-coincidence")
    assert "COINC_MSG" not in out and out.count("NO_COINCIDENCE") == 2


def test_the_example_messages_and_a_file_that_is_not_json(tmp_path):
    out, err = run(DATA / "example_coincidence_tier_message.json", DATA / "example_heartbeat_message.json")
    assert out.strip() == "0 alert(s), 0 invalid message(s)" and not err
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(CommandError, match="line 1 is not JSON"):
        run(bad)


@pytest.mark.parametrize(
    "override, fragment",
    [
        ({"SNEWS_WINDOW_S": 0}, "SNEWS_WINDOW_S'] must be a positive"),
        ({"SNEWS_EXPIRY_S": 5}, "shorter than SNEWS_WINDOW_S"),
        ({"SNEWS_FALSE_ALARM_RATES": {"IceCube": -1}}, "positive rates"),
        ({"SNEWS_ALERT_TOPIC": ""}, "SNEWS_ALERT_TOPIC'] must name a topic"),
    ],
)
def test_check_e020_refuses_bad_snews_settings(settings, override, fragment):
    from tom_mma_broker.snews.checks import check_snews_settings

    assert check_snews_settings() == []
    settings.TOM_MMA_BROKER = {**settings.TOM_MMA_BROKER, **override}
    (error,) = check_snews_settings()
    assert error.id == "tom_mma_broker.E020" and fragment in error.msg
