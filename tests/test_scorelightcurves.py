"""``./manage.py scorelightcurves``: light curves from CSV files scored with the shipped classifier."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from tom_mma_broker.classifier import load_model

DATA = Path(__file__).parent / "data" / "classifier"
AT2017GFO = DATA / "at2017gfo_okc.csv"  # every AT2017gfo point of the Open Kilonova Catalog, all bands
MERGER = "2017-08-17T12:41:04.4Z"  # GW170817


def run(*args: str) -> list[str]:
    out = io.StringIO()
    call_command("scorelightcurves", *args, stdout=out)
    return out.getvalue().splitlines()


def run_json(*args: str) -> list[dict]:
    return [json.loads(line) for line in run(*args, "--json")]


@pytest.fixture
def two_objects(tmp_path) -> Path:
    path = tmp_path / "lc.csv"
    path.write_text(
        "object_id,mjd,band,mag,mag_err,upper_limit\n"
        "ZTFone,60000.0,ztfg,19.0,0.05,0\n"
        "ZTFone,59998.0,ztfr,20.5,,1\n"
        "onlylimits,60001.0,lsstr,23.0,,1\n"
    )
    return path


def test_json_lines_have_the_documented_keys(two_objects):
    rows = run_json(str(two_objects))
    assert [r["object_id"] for r in rows] == ["ZTFone", "onlylimits"]
    one, limits = rows
    assert {"object_id", "kn_score", "is_candidate", "model_version", "n_detections"} <= set(one)
    assert one["model_version"] == load_model().version and one["n_detections"] == 1
    assert one["is_candidate"] is False  # one detection without GW context: never
    assert one["features"]["predet_gap_days"] == 2.0
    assert limits["kn_score"] is None and limits["n_detections"] == 0 and "no detection" in limits["error"]


def test_at2017gfo_with_gw_context_by_its_second_night():
    """The issue's goal, through the command astronomers use: a candidate by the second night with context."""
    first_night = run_json(str(AT2017GFO), "--until-days", "0.3", "--event-time", MERGER, "--distance-mpc", "40",
                           "--credible-level", "0.3")  # fmt: skip
    second_night = run_json(str(AT2017GFO), "--until-days", "1.5", "--event-time", MERGER, "--distance-mpc", "40",
                            "--credible-level", "0.3")  # fmt: skip
    assert second_night[0]["is_candidate"] is True and second_night[0]["evidence"]["gw_context"] is True
    assert second_night[0]["n_detections"] > first_night[0]["n_detections"]
    assert set(second_night[0]["evidence"]["bands"]) >= {"u", "g", "r", "i", "z", "J", "H", "K"}
    # without context, stated: the command says what it gives
    plain = run_json(str(AT2017GFO), "--until-days", "1.5")[0]
    assert plain["evidence"]["gw_context"] is False and isinstance(plain["is_candidate"], bool)


def test_until_days_keeps_only_the_early_points():
    early = run_json(str(AT2017GFO), "--until-days", "0.5")[0]
    full = run_json(str(AT2017GFO))[0]
    assert early["n_detections"] < full["n_detections"] and early["features"]["span_days"] <= 0.5


def test_text_output_says_probability_decision_version_and_features(two_objects):
    lines = run(str(two_objects))
    assert lines[0].startswith("ZTFone: kilonova probability ") and "not a candidate" in lines[0]
    assert load_model().version in lines[0]
    assert lines[1].strip().startswith("1 detections in g") and lines[2].strip().startswith("features: ")
    assert lines[3].startswith("onlylimits: not scored")


@pytest.mark.parametrize(
    "content, message",
    [
        ("object_id,mjd,band,mag\nA,1,g,20\n", "missing column(s) mag_err, upper_limit"),
        ("object_id,mjd,band,mag,mag_err,upper_limit\nA,x,g,20,,0\n", "line 2"),
        ("object_id,mjd,band,mag,mag_err,upper_limit\nA,1,g,20,,maybe\n", "upper_limit must be 0 or 1"),
    ],
)
def test_bad_files_are_clear_errors(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(CommandError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run(str(path))


def test_bad_options_are_clear_errors(two_objects):
    with pytest.raises(CommandError, match="need --event-time"):
        run(str(two_objects), "--distance-mpc", "40")
    with pytest.raises(CommandError, match="not an ISO 8601 time"):
        run(str(two_objects), "--event-time", "yesterday")
    with pytest.raises(CommandError, match="No such file"):
        run(str(two_objects.parent / "missing.csv"))


def test_a_single_detection_without_context_is_never_a_candidate_even_when_it_scores_high(tmp_path):
    """Bright or faint, any band, any error: one detection alone never passes (issue 9)."""
    path = tmp_path / "singles.csv"
    lines = ["object_id,mjd,band,mag,mag_err,upper_limit"]
    for n, (band, mag, err) in enumerate([("g", 17.0, 0.01), ("r", 21.0, 0.3), ("i", 19.5, 0.05), ("z", 20.0, 0.1),
                                          ("J", 18.0, 0.1), ("ps1::y", 20.0, 0.2), ("lsstu", 22.0, 0.2)]):  # fmt: skip
        lines += [f"S{n},60000.0,{band},{mag},{err},0", f"S{n},59999.0,{band},{mag + 2},,1"]
    path.write_text("\n".join(lines) + "\n")
    rows = run_json(str(path))
    assert len(rows) == 7 and not any(r["is_candidate"] for r in rows)
    assert all("no GW context" in r["reason"] or "below" in r["reason"] for r in rows)
