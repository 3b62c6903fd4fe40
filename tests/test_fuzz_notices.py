"""Fuzzing of the notice parsers: LVK notices (Avro and JSON) with their sky maps, GCN notices (GRBs, X-rays,
neutrinos, SNEWS, Super-K).

Inputs: the real samples (``tests/data/lvk``, ``tests/data/gcn``) mutated byte by byte (so that most inputs get
past the first decoder check: the Avro header, the JSON syntax), their decoded records with fields deleted or
replaced at any depth, and any JSON value. Property: the parser returns its frozen notice or raises its one
documented error (:class:`~tom_mma.gw.notices.NoticeError`, :class:`~tom_mma.transients.notices.TransientNoticeError`)
with a reason, ``permanent`` so that the ingest path quarantines the message at once. See ``tests/fuzzing.py``.
"""

from __future__ import annotations

import base64
import json
from functools import cache
from pathlib import Path

from hop.models import AvroBlob, Blob
from hypothesis import example, given
from hypothesis import strategies as st

from tests import lvk_samples
from tests.fuzzing import assert_clean, fuzz, json_values, mutated, mutated_json
from tom_mma.gw.notices import GWNotice, NoticeError, notice_from_message, parse_avro, parse_json
from tom_mma.gw.skymaps import MultiOrderSkyMap, SkyMapError, read_multiorder
from tom_mma.transients.notices import ParsedNotice, TransientNoticeError, parse_notice

GCN = Path(__file__).parent / "data" / "gcn"
GCN_SAMPLES = sorted(GCN.rglob("*.json"))


@cache
def lvk_bytes(name: str) -> bytes:
    return (lvk_samples.DATA / f"MS181101ab-{name}.avro").read_bytes()


@cache
def small_skymap() -> bytes:
    """The preliminary notice's sky map (a real multi-order FITS file)."""
    return lvk_samples.avro_record("preliminary")["event"]["skymap"]


def _notice(call):
    def run():
        result = call()
        assert isinstance(result, GWNotice)
        assert len(result.digest) == 64  # what a stored notice computes
        return result

    return run


@fuzz(0.5)
@given(mutated(lvk_bytes("retraction")))
def test_lvk_avro_retraction_bytes(payload):
    assert_clean(_notice(lambda: notice_from_message(Blob(content=payload), "avro")), (NoticeError,))


@fuzz(0.15)
@given(mutated(lvk_bytes("preliminary"), head=4096))
def test_lvk_avro_notice_with_its_sky_map_bytes(payload):
    assert_clean(_notice(lambda: notice_from_message(Blob(content=payload), "avro")), (NoticeError,))


@fuzz(0.5)
@given(st.one_of(mutated_json(lvk_samples.avro_record("retraction")), json_values()))
@example({**lvk_samples.avro_record("retraction"), "alert_type": []})  # was TypeError: unhashable type: 'list'
def test_lvk_avro_records(record):
    assert_clean(_notice(lambda: notice_from_message(AvroBlob(content=record, schema={}), "avro")), (NoticeError,))


def _json_record(name: str) -> dict:
    record = lvk_samples.json_form(lvk_samples.avro_record(name))
    if record.get("event") and record["event"].get("skymap"):
        record["event"]["skymap"] = base64.b64encode(b"x").decode()  # small: the maps are fuzzed on their own
    return record


@fuzz(0.5)
@given(st.one_of(mutated_json(_json_record("preliminary")), mutated_json(_json_record("ext-update")), json_values()))
@example({**_json_record("preliminary"), "time_created": 5})
def test_lvk_json_notices(record):
    assert_clean(_notice(lambda: parse_json(record)), (NoticeError,))


@fuzz(0.3)
@given(mutated((lvk_samples.DATA / "MS181101ab-retraction.json").read_bytes()))
def test_lvk_json_bytes(payload):
    assert_clean(_notice(lambda: notice_from_message(payload, "json")), (NoticeError,))


@fuzz(0.25)
@given(mutated(small_skymap(), head=8 * 2880))
def test_sky_maps(data):
    def run():
        skymap = read_multiorder(data)
        assert isinstance(skymap, MultiOrderSkyMap)
        assert skymap.summary().n_pixels > 0  # what ingest computes of a map
        return skymap

    assert_clean(run, (SkyMapError,))


@fuzz(0.1)
@given(mutated(small_skymap(), head=8 * 2880))
def test_lvk_record_with_a_mutated_sky_map(data):
    record = lvk_samples.avro_record("preliminary")
    record["event"]["skymap"] = data
    assert_clean(_notice(lambda: parse_avro(record)), (NoticeError,))


@cache
def gcn_samples() -> list[dict]:
    return [json.loads(p.read_text()) for p in GCN_SAMPLES]


def _transient(payload, source=None):
    def run():
        result = parse_notice(payload, source)
        assert isinstance(result, ParsedNotice)
        assert result.messenger
        return result

    return run


def _lvk_nu_with_pval(pval) -> dict:
    content = json.loads((GCN / "icecube" / "lvk_nu_track_search.example.json").read_text())
    content["coincident_events"][1]["event_pval_generic"] = pval
    return content


@fuzz(1.0)
@given(st.one_of(*(mutated_json(s) for s in gcn_samples()), json_values()))
@example(_lvk_nu_with_pval("0.01"))  # was TypeError: '<' not supported between instances of 'str' and 'float'
@example(_lvk_nu_with_pval([]))
def test_gcn_notices(content):
    assert_clean(_transient(content), (TransientNoticeError,))


@fuzz(0.5)
@given(st.one_of(*(mutated(p.read_bytes(), head=512) for p in GCN_SAMPLES)))
def test_gcn_notice_bytes(payload):
    assert_clean(_transient(payload), (TransientNoticeError,))
