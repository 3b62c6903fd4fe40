"""Fuzzing of the archive's decoder: every format hop names (``_format``) or the bytes suggest.

This is what runs on every message before any handler (:meth:`Envelope.decoded`): JSON, Avro containers (the
real LVK, ZTF, Fink and Rubin packets mutated byte by byte, so that most inputs get past the header),
VOEvent, GCN circulars and text notices, blobs. Property: it decodes, and the decoded content can be written to
the archive (:class:`~tom_mma_broker.formats.ArchiveJSONEncoder`), or it raises
:class:`~tom_mma_broker.formats.DecodeError` (the message is quarantined at stage ``decode``) or
:class:`~tom_mma_broker.formats.UnstorableContent` (archived without content, quarantined at stage
``archive``); nothing else escapes. Splitting many-record files for replay is fuzzed the same way.
See ``tests/fuzzing.py``.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from hypothesis import example, given
from hypothesis import strategies as st

from tests import optical_samples
from tests.fuzzing import assert_clean, fuzz, mutated
from tom_mma_broker.containers import split_container
from tom_mma_broker.envelope import Envelope
from tom_mma_broker.formats import ArchiveJSONEncoder, DecodeError, UnstorableContent

DATA = Path(__file__).parent / "data"
FORMATS = ["json", "avro", "voevent", "circular", "gcntextnotice", "blob", "unknown-format"]
VOEVENT = b"""<?xml version="1.0" encoding="UTF-8"?>
<voe:VOEvent xmlns:voe="http://www.ivoa.net/xml/VOEvent/v2.0" ivorn="ivo://nasa.gsfc.gcn/test#1" role="test"
 version="2.0"><Who><Date>2017-08-17T12:41:04</Date></Who><What><Param name="x" value="1"/></What></voe:VOEvent>"""
GCN_TEXT = b"TITLE:            GCN/LVC NOTICE\nNOTICE_DATE:      Thu 17 Aug 17 13:21:42 UT\nTRIGGER_NUM:      S1\n"
CIRCULAR = b'{"subject": "GRB 170817A", "circularId": 21505, "body": "text", "submitter": "someone"}'


@cache
def samples() -> list[bytes]:
    return [
        (DATA / "lvk" / "MS181101ab-retraction.avro").read_bytes(),
        optical_samples.ZTF_33.read_bytes(),
        optical_samples.FINK_LSST.read_bytes(),
        (DATA / "lvk" / "MS181101ab-retraction.json").read_bytes(),
        VOEVENT,
        GCN_TEXT,
        CIRCULAR,
    ]


def _decode(fmt: str | None, payload: bytes):
    def run():
        headers = [("_format", fmt.encode())] if fmt else []
        decoded = Envelope(topic="t", payload=payload, headers=headers).decoded()
        if decoded.content is not None:
            ArchiveJSONEncoder().encode(decoded.content)  # what the archive writes
        return decoded

    return run


@fuzz(1.0)
@given(st.sampled_from([None, *FORMATS]), st.one_of(*(mutated(s) for s in samples()), st.binary(max_size=64)))
@example("json", b"[" * 100_000)
@example("avro", b"Obj\x01\x02\x14avro.codec\x0edeflate\x00")
def test_decode_every_format(fmt, payload):
    assert_clean(_decode(fmt, payload), (DecodeError, UnstorableContent), permanent=False)


@fuzz(0.3)
@given(mutated(optical_samples.FINK_LSST.read_bytes(), head=4096))
@example(b"Obj\x01\x00" + b"S" * 16)  # no schema: was KeyError: 'avro.schema'
@example(b"Obj\x01\x02\x16avro.schema\x04{}\x00" + b"S" * 16)  # a schema without a type: was KeyError: 'type'
@example(b"Obj\x01\x02\x14avro.codec\x02\xff\x00" + b"S" * 16)  # a codec name that is not UTF-8
def test_split_many_record_files(payload):
    assert_clean(lambda: split_container(payload), (DecodeError,), permanent=False)
