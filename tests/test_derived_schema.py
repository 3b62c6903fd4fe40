"""Schema ``tom-mma/derived-alert/v1``: round trips, validation reasons, and agreement with the JSON Schema."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from tests.test_derived_factories import alert_dict, make_alert, retraction_dict
from tom_mma.schemas.derived_alert import SCHEMA_ID, AlertCandidate, AlertPoint, DerivedAlert

JSON_SCHEMA = Path(__file__).resolve().parent.parent / "docs" / "schemas" / "derived-alert-v1.json"


def test_round_trip_dict_and_json():
    alert = make_alert(gw_event="S170817a")
    assert DerivedAlert.from_dict(alert.to_dict()) == alert
    assert DerivedAlert.from_json(alert.to_json()) == alert
    assert json.loads(alert.to_json())["schema"] == SCHEMA_ID
    assert alert.to_json() == make_alert(**alert.to_dict()).to_json()  # stable bytes


def test_frozen_and_nested_types():
    alert = make_alert()
    with pytest.raises(dataclasses.FrozenInstanceError):
        alert.kilonova_score = 0.1
    assert isinstance(alert.candidate, AlertCandidate)
    assert all(isinstance(p, AlertPoint) for p in alert.photometry)
    assert alert.photometry[0].upper_limit is False
    assert alert.features == {"rise_time": 0.4, "colour_gr": None}
    assert alert.candidate.aliases == ("AT2017gfo",)


def test_optional_fields_take_defaults():
    data = alert_dict()
    for key in ("features", "source_message_ids", "gw_event", "photometry", "retracts", "reason"):
        del data[key]
    del data["candidate"]["aliases"]
    alert = DerivedAlert.from_dict(data)
    assert (alert.features, alert.source_message_ids, alert.gw_event, alert.photometry) == ({}, (), None, ())
    assert alert.candidate.aliases == ()


def test_unknown_top_level_keys_are_ignored():
    assert DerivedAlert.from_dict({**alert_dict(), "later_addition": 1}).kind == "classification"


def _point(**overrides):
    return {"mjd": 60000.0, "band": "r", "magnitude": 20.0, **overrides}


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"schema": "tom-mma/derived-alert/v2"}, "schema must be 'tom-mma/derived-alert/v1'"),
        ({"alert_id": "not-a-uuid"}, "alert_id must be a UUID"),
        ({"kind": "rumour"}, "kind must be one of classification, retraction"),
        ({"created": "2017-08-18T06:00:00"}, "created must be in UTC"),
        ({"created": "yesterday"}, "created must be an ISO 8601 time"),
        ({"kilonova_score": 1.5}, "kilonova_score must be in [0, 1], not 1.5"),
        ({"kilonova_score": "0.9"}, "kilonova_score must be a number, not str"),
        ({"kilonova_score": True}, "kilonova_score must be a number, not bool"),
        ({"latest_point_mjd": float("nan")}, "latest_point_mjd must be finite"),
        ({"model_version": " "}, "model_version must not be empty"),
        ({"candidate": {"name": "x", "ra": 360.0, "dec": 0.0}}, "candidate.ra must be in [0, 360)"),
        ({"candidate": {"name": "x", "ra": 10.0, "dec": -91.0}}, "candidate.dec must be in [-90, 90]"),
        ({"candidate": {"ra": 10.0, "dec": 0.0}}, "missing field candidate.'name'"),
        ({"candidate": "SSS17a"}, "candidate must be an object"),
        ({"features": {"a": "big"}}, "features['a'] must be a number"),
        ({"source_message_ids": ["abc"]}, "source_message_ids[0] must be a UUID"),
        ({"photometry": [_point(upper_limit="yes")]}, "photometry[0].upper_limit must be true or false"),
        ({"photometry": [_point(), _point(magnitude_error=-0.1)]}, "photometry[1].magnitude_error must not be"),
        ({"photometry": [{"mjd": 1.0, "magnitude": 2.0}]}, "missing field photometry[0].'band'"),
        ({"retracts": "c0ffee00-0000-4000-8000-000000000000"}, "only allowed on kind 'retraction'"),
        ({"kind": "retraction", "reason": "bogus"}, "must name the alert_id it retracts"),
        ({"kind": "retraction", "retracts": "c0ffee00-0000-4000-8000-000000000000"}, "must give a 'reason'"),
    ],
)
def test_malformed_alert_raises_value_error_with_reason(overrides, reason):
    with pytest.raises(ValueError) as excinfo:
        DerivedAlert.from_dict(alert_dict(**overrides))
    assert str(excinfo.value).startswith("derived alert: ")
    assert reason in str(excinfo.value)


@pytest.mark.parametrize("missing", ["schema", "alert_id", "kind", "created", "candidate", "latest_point_mjd",
                                     "kilonova_score", "model_version"])  # fmt: skip
def test_required_fields(missing):
    data = alert_dict()
    del data[missing]
    with pytest.raises(ValueError, match=f"missing field '{missing}'"):
        DerivedAlert.from_dict(data)


def test_not_an_object_or_not_json():
    with pytest.raises(ValueError, match="must be a JSON object, not list"):
        DerivedAlert.from_dict([])
    with pytest.raises(ValueError, match="not valid JSON"):
        DerivedAlert.from_json(b"{not json")


def test_retraction_round_trip():
    original = make_alert()
    retraction = DerivedAlert.from_dict(retraction_dict(original))
    assert retraction.is_retraction and retraction.retracts == original.alert_id
    assert DerivedAlert.from_dict(retraction.to_dict()) == retraction


def test_json_schema_document_agrees_with_the_dataclass():
    schema = json.loads(JSON_SCHEMA.read_text())
    assert schema["$id"] == SCHEMA_ID == schema["properties"]["schema"]["const"]
    produced = make_alert().to_dict()
    assert set(schema["properties"]) == set(produced)
    assert set(schema["properties"]["candidate"]["properties"]) == set(produced["candidate"])
    assert set(schema["properties"]["photometry"]["items"]["properties"]) == set(produced["photometry"][0])
    for key in schema["required"]:  # every required key really is required by from_dict
        data = alert_dict()
        del data[key]
        with pytest.raises(ValueError):
            DerivedAlert.from_dict(data)


def test_doc_example_parses():
    doc = (Path(__file__).resolve().parent.parent / "docs" / "derived-alerts.md").read_text()
    example = doc.split("```json\n", 1)[1].split("```", 1)[0]
    alert = DerivedAlert.from_json(example)
    assert alert.gw_event == "S250501abc" and alert.photometry[1].upper_limit is True


def test_building_an_alert_directly_validates_too():
    fields = {f: getattr(make_alert(), f) for f in DerivedAlert.__dataclass_fields__}
    with pytest.raises(ValueError, match="alert_id must be a UUID"):
        DerivedAlert(**{**fields, "alert_id": "42"})
    with pytest.raises(ValueError, match="created must be in UTC"):
        DerivedAlert(**{**fields, "created": "2017-08-18T06:00:00+02:00"})
    with pytest.raises(ValueError, match=r"source_message_ids\[0\] must be a UUID"):
        DerivedAlert(**{**fields, "source_message_ids": ("x",)})
    with pytest.raises(ValueError, match="latest_point_mjd must be a number"):
        DerivedAlert(**{**fields, "latest_point_mjd": "57983"})
