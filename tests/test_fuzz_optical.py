"""Fuzzing of the optical alert readers: ZTF and Rubin packets, Fink (livestream and data-transfer files).

Inputs: the real packets (``tests/data/ztf``, ``tests/data/optical``, lsst-alert-packet's ``fakeAlert.avro``)
mutated byte by byte, gzipped or not; Fink's livestream form (schemaless value, schema as the key) with either
mutated; Rubin's Confluent frames; decoded records with fields deleted or replaced at any depth. Property: the
handler's reading (:func:`~tom_mma.handlers.optical.alert_records`, then
:func:`~tom_mma.optical.alerts.normalise`) gives alerts or raises
:class:`~tom_mma.optical.packets.AlertFormatError` (permanent) with a reason. See ``tests/fuzzing.py``.
"""

from __future__ import annotations

import gzip
import io
import json
from functools import cache

import fastavro
from hop.io import Metadata
from hop.models import AvroBlob, Blob
from hypothesis import example, given
from hypothesis import strategies as st

from tests import optical_samples as samples
from tests.fuzzing import assert_clean, fuzz, json_values, mutated, mutated_json
from tom_mma.handlers.optical import alert_records
from tom_mma.optical.alerts import OpticalAlert, normalise
from tom_mma.optical.packets import AlertFormatError


def _read(message, key=None):
    def run():
        metadata = Metadata(topic="t", partition=0, offset=0, timestamp=0, key=key, headers=[], _raw=None)
        alerts = [normalise(r) for r in alert_records(message, metadata)]
        assert alerts and all(isinstance(a, OpticalAlert) for a in alerts)
        return alerts

    return run


@cache
def packet(name: str) -> bytes:
    path = {"ztf": samples.ZTF_33, "fink-ztf": samples.FINK_ZTF, "fink-lsst": samples.FINK_LSST}.get(name)
    return path.read_bytes() if path else samples.rubin_sample().read_bytes()


@cache
def record(name: str) -> dict:
    path = {"ztf": samples.ZTF_33, "fink-ztf": samples.FINK_ZTF, "fink-lsst": samples.FINK_LSST}.get(name)
    return samples.records(path or samples.rubin_sample())[0][0]


@cache
def fink_livestream() -> tuple[bytes, bytes]:
    (rec,), schema = samples.records(samples.FINK_ZTF)
    return samples.fink_message(rec, schema)


@cache
def rubin_frame() -> bytes:
    return samples.confluent_frame(record("rubin"))


PACKETS = ["ztf", "fink-ztf", "fink-lsst", "rubin"]


@fuzz(0.75)
@given(st.one_of(*(mutated(packet(n), head=4096) for n in PACKETS)))
def test_avro_packets(payload):
    assert_clean(_read(Blob(content=payload)), (AlertFormatError,))


@fuzz(0.25)
@given(st.one_of(*(mutated(gzip.compress(packet(n), mtime=0)) for n in ("ztf", "fink-lsst"))))
def test_gzipped_packets(payload):
    assert_clean(_read(Blob(content=payload)), (AlertFormatError,))


@fuzz(0.5)
@given(st.one_of(*(mutated_json(record(n)) for n in PACKETS), json_values()))
@example({**record("ztf"), "candidate": {**record("ztf")["candidate"], "fid": float("inf")}})  # was OverflowError
@example({**record("ztf"), "prv_candidates": [None]})  # was AttributeError: 'NoneType' object has no attribute 'get'
@example({**record("ztf"), "fp_hists": 5})  # was TypeError: 'int' object is not iterable
@example({**record("rubin"), "diaObject": True})  # was AttributeError: 'bool' object has no attribute 'get'
@example({**record("fink-lsst"), "xm": [1]})
def test_decoded_records(content):
    assert_clean(_read(AvroBlob(content=content, schema={})), (AlertFormatError,))


@fuzz(0.5)
@given(st.one_of(mutated(fink_livestream()[0]).map(lambda v: (v, fink_livestream()[1])),
                 mutated(fink_livestream()[1], head=20000).map(lambda k: (fink_livestream()[0], k))))  # fmt: skip
def test_fink_livestream(value_and_key):
    value, key = value_and_key
    assert_clean(_read(Blob(content=value), key=key), (AlertFormatError,))


@fuzz(0.5)
@given(st.one_of(mutated(rubin_frame(), head=64), st.binary(max_size=64)))
@example(b"\x00\x00\x00\x03\xe8")  # a frame with a schema id and no record
def test_rubin_frames(frame):
    assert_clean(_read(Blob(content=frame)), (AlertFormatError,))


@fuzz(0.2)
@given(mutated(json.dumps(fastavro.parse_schema(samples.records(samples.FINK_ZTF)[1])).encode(), head=4096))
def test_fink_schema_keys_that_are_not_schemas(key):
    (rec,), schema = samples.records(samples.FINK_ZTF)
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), rec)
    assert_clean(_read(Blob(content=out.getvalue()), key=key), (AlertFormatError,))
