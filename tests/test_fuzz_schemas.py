"""Fuzzing of the JSON message parsers: derived alerts, source photometry, SNEWS 2.0 observation messages.

Inputs: documents drawn from the published JSON Schemas (``docs/schemas/*.json``; SNEWS's own schemas in
``tests/data/snews/schema``) with hypothesis-jsonschema, the same documents and the real examples with fields
deleted or replaced at any depth, any JSON value, and raw bytes. Property: the parser returns its frozen
message or raises its one documented error, with a reason and ``permanent`` (so the ingest path quarantines the
message at the first attempt); nothing else escapes. See ``tests/fuzzing.py`` for the settings.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from hypothesis import example, given
from hypothesis import strategies as st

from tests.fuzzing import assert_clean, fuzz, json_values, mutated, mutated_json
from tests.fuzzing import schema_strategy as from_schema
from tom_mma.hopmessages import NotJSON, json_payload
from tom_mma.schemas.derived_alert import DerivedAlert
from tom_mma.schemas.fields import MessageError
from tom_mma_broker.schemas.photometry import PhotometryMessage, mjd_to_iso
from tom_mma_broker.snews.messages import ObservationMessage, SnewsMessageError, parse_message

ROOT = Path(__file__).resolve().parent.parent
SNEWS = ROOT / "tests" / "data" / "snews"


@cache
def schema(path: Path) -> dict:
    document = json.loads(path.read_text())
    document.pop("$schema", None)  # hypothesis-jsonschema reads the 2020-12 keywords these use without it
    document.pop("$id", None)
    if path.parent.name == "schema":  # SNEWS's: its times are any string there; ISO 8601 UTC is what they mean
        for name, prop in document.get("properties", {}).items():
            if name.endswith("time_utc"):
                prop.pop("anyOf", None)
                prop.update(type="string", format="date-time")
    return document


def _derived(data):
    result = DerivedAlert.from_dict(data)
    assert isinstance(result, DerivedAlert)
    assert DerivedAlert.from_json(result.to_json()) == result  # what parses, round-trips
    return result


def _photometry(data):
    result = PhotometryMessage.from_dict(data)
    assert PhotometryMessage.from_json(result.to_json()) == result
    return result


VALID_DERIVED = {
    "schema": "tom-mma/derived-alert/v1",
    "alert_id": "4b7b0f0e-6f0c-4a53-9f55-4e1f0c3b2a10",
    "kind": "classification",
    "created": "2025-05-01T12:00:00Z",
    "candidate": {"name": "ZTF25abcdefg", "aliases": [], "ra": 150.1, "dec": -12.5},
    "latest_point_mjd": 60796.5,
    "kilonova_score": 0.82,
    "model_version": "kn-rf-1.0.0",
    "features": {"a": 1.0, "b": None},
    "source_message_ids": ["4b7b0f0e-6f0c-4a53-9f55-4e1f0c3b2a11"],
    "gw_event": "S250501a",
    "photometry": [{"mjd": 60796.5, "band": "r", "magnitude": 19.0, "magnitude_error": 0.1, "upper_limit": False}],
    "retracts": None,
    "reason": None,
}
VALID_POINT = PhotometryMessage.create(
    object_name="AT2017gfo", ra=197.450375, dec=-23.381494, mjd=57983.9784, band="r", magnitude=18.04,
    magnitude_error=0.02, source="2017ApJ...848L..17C", telescope="Blanco", instrument="DECam",
).to_dict()  # fmt: skip


@fuzz(0.25)  # the schema's retraction rules (if/not) make drawing slow: fewer examples, more come from mutation
@given(from_schema(schema(ROOT / "docs" / "schemas" / "derived-alert-v1.json")))
def test_derived_alerts_drawn_from_the_schema(data):
    assert_clean(lambda: _derived(data), (MessageError,))


@fuzz(0.5)
@given(st.one_of(mutated_json(VALID_DERIVED), json_values()))
@example({**VALID_DERIVED, "features": {"x": 1e400}})  # JSON's 1e400 is inf: refused, not stored
def test_derived_alerts_mutated(data):
    assert_clean(lambda: _derived(data), (MessageError,))


def _time_of_mjd(data: dict) -> dict:
    # the schema cannot say that time and mjd agree: half the documents are made to
    try:
        return {**data, "time": mjd_to_iso(data["mjd"])}
    except (OverflowError, KeyError, TypeError):
        return data


@fuzz(0.5)
@given(
    st.one_of(*[from_schema(schema(ROOT / "docs" / "schemas" / "photometry-v1.json"))] * 1).flatmap(
        lambda d: st.sampled_from([d, _time_of_mjd(d)])
    )
)
def test_photometry_drawn_from_the_schema(data):
    assert_clean(lambda: _photometry(data), (MessageError,))


@fuzz(0.5)
@given(st.one_of(mutated_json(VALID_POINT), json_values()))
def test_photometry_mutated(data):
    assert_clean(lambda: _photometry(data), (MessageError,))


@fuzz(0.5)
@given(st.one_of(mutated(json.dumps(VALID_POINT).encode()), st.binary(max_size=64)))
@example(b"[" * 100_000)  # nested deeper than Python's recursion limit
def test_json_payload_bytes(payload):
    assert_clean(lambda: PhotometryMessage.from_dict(json_payload(payload, "photometry")), (NotJSON, MessageError))


SNEWS_TIERS = ["CoincidenceTier", "SignificanceTier", "TimingTier", "Retraction", "Heartbeat"]


def _snews_examples() -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(SNEWS.glob("example_*_message.json"))]


def _snews(data):
    result = parse_message(data)
    assert isinstance(result, ObservationMessage)
    return result


@fuzz(0.6)
@given(st.one_of(*(from_schema(schema(SNEWS / "schema" / f"{t}Message.schema.json")) for t in SNEWS_TIERS)))
def test_snews_messages_drawn_from_their_schemas(data):
    assert_clean(lambda: _snews(data), (SnewsMessageError,))


@fuzz(0.6)
@given(st.one_of(*(mutated_json(e) for e in _snews_examples() if isinstance(e, dict)), json_values()))
def test_snews_messages_mutated(data):
    assert_clean(lambda: _snews(data), (SnewsMessageError,))


@fuzz(0.4)
@given(st.one_of(*(mutated(json.dumps(e).encode()) for e in _snews_examples()), st.binary(max_size=64)))
@example(b"\x80\x04\x95")  # the start of a pickle: refused, never unpickled
def test_snews_message_bytes(payload):
    assert_clean(lambda: _snews(payload), (SnewsMessageError,))
