"""Helpers of the fuzz and poison-message tests: hypothesis settings, byte mutations, decompression bombs.

The fuzz tests are deterministic (``derandomize=True``, no example database) and modest by default: at most
``TOM_MMA_FUZZ_EXAMPLES`` examples per parser (default 200). Run more with, e.g.::

    TOM_MMA_FUZZ_EXAMPLES=20000 pytest tests/test_fuzz_*.py

``TOM_MMA_FUZZ_SEED`` (an integer) turns derandomize off and seeds hypothesis instead, to explore elsewhere.
"""

from __future__ import annotations

import functools
import os
import zlib
from collections.abc import Callable

from hypothesis import HealthCheck, seed, settings
from hypothesis import strategies as st

__all__ = ["schema_strategy", "EXAMPLES", "fuzz", "mutated", "gzip_bomb", "deflate_bomb", "json_values", "assert_clean"]

EXAMPLES = int(os.environ.get("TOM_MMA_FUZZ_EXAMPLES", "200"))
_SEED = os.environ.get("TOM_MMA_FUZZ_SEED")


def fuzz(share: float = 1.0) -> Callable:
    """Decorator (over ``@given``) of a fuzz test: ``share`` of :data:`EXAMPLES` examples, deterministic (or seeded
    with ``TOM_MMA_FUZZ_SEED``), no deadline, no example database."""
    configured = settings(
        max_examples=max(10, int(EXAMPLES * share)),
        derandomize=_SEED is None,
        deadline=None,
        database=None,
        print_blob=True,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
            HealthCheck.large_base_example,
            HealthCheck.function_scoped_fixture,
        ],
    )

    def decorate(test: Callable) -> Callable:
        test = configured(test)
        return seed(int(_SEED))(test) if _SEED is not None else test

    return decorate


# values that make parsers trip: varint edges, lengths, NUL, 0xff...
_INTERESTING = [0x00, 0x01, 0x02, 0x7F, 0x80, 0x81, 0xFE, 0xFF]


@st.composite
def mutated(draw: Callable, sample: bytes, max_ops: int = 4, head: int = 2048) -> bytes:
    """``sample`` with 1 to ``max_ops`` byte-level mutations: bit flips, truncation, insertion, deletion,
    overwrites with interesting bytes, a duplicated slice. Positions favour the first ``head`` bytes, where
    the headers, schemas and lengths that a decoder checks first are."""
    data = bytearray(sample)
    for _ in range(draw(st.integers(1, max_ops))):
        n = len(data)
        if n == 0:
            data += draw(st.binary(min_size=1, max_size=16))
            continue
        pos = draw(st.one_of(st.integers(0, min(n, head) - 1), st.integers(0, n - 1)))
        op = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "overwrite", "duplicate"]))
        if op == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(
                st.one_of(st.binary(min_size=1, max_size=8), st.sampled_from([b"\x00" * 4, b"\xff" * 8]))
            )
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 64))]
        elif op == "overwrite":
            data[pos] = draw(st.sampled_from(_INTERESTING))
        else:
            size = draw(st.integers(1, 64))
            data[pos:pos] = data[pos : pos + size]
    return bytes(data)


def json_values(max_leaves: int = 20) -> st.SearchStrategy:
    """Any JSON value (what a hostile producer can send)."""
    leaves = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=30),
    )
    return st.recursive(
        leaves,
        lambda children: st.one_of(
            st.lists(children, max_size=5), st.dictionaries(st.text(max_size=12), children, max_size=5)
        ),
        max_leaves=max_leaves,
    )


@st.composite
def mutated_json(draw: Callable, document: dict, max_ops: int = 3) -> dict:
    """``document`` (a JSON object) with 1 to ``max_ops`` of its fields, at any depth, deleted or replaced."""
    import copy

    doc = copy.deepcopy(document)
    for _ in range(draw(st.integers(1, max_ops))):
        # walk down to a container
        node = doc
        for _depth in range(draw(st.integers(0, 3))):
            children = (
                [v for v in node.values() if isinstance(v, dict | list)]
                if isinstance(node, dict)
                else [v for v in node if isinstance(v, dict | list)]
            )
            if not children:
                break
            node = draw(st.sampled_from(children))
        if isinstance(node, dict):
            keys = sorted(node, key=str)
            if not keys:
                node[draw(st.text(max_size=8))] = draw(json_values(5))
                continue
            key = draw(st.sampled_from(keys))
            if draw(st.booleans()):
                del node[key]
            else:
                node[key] = draw(json_values(5))
        elif node:
            i = draw(st.integers(0, len(node) - 1))
            node[i] = draw(json_values(5))
    return doc


@functools.cache
def deflate_bomb(inflated: int = 1 << 30) -> bytes:
    """Raw deflate of ``inflated`` zero bytes (1 GiB: about 1 MB), built once per test process."""
    engine = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    zeros = b"\0" * (1 << 20)
    parts = [engine.compress(zeros) for _ in range(inflated >> 20)]
    return b"".join([*parts, engine.flush()])


@functools.cache
def gzip_bomb(inflated: int = 1 << 30, prefix: bytes = b"") -> bytes:
    """A gzip file of ``prefix`` then zeros, ``inflated`` bytes in all (1 GiB: about 1 MB)."""
    engine = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = b"\0" * (1 << 20)
    parts = [engine.compress(prefix)] + [engine.compress(zeros) for _ in range((inflated - len(prefix)) >> 20)]
    return b"".join([*parts, engine.flush()])


def assert_clean(
    call: Callable[[], object], allowed: tuple[type[BaseException], ...], permanent: bool = True
) -> object:
    """Run ``call``: it returns, or raises one of ``allowed`` with a reason; any other exception fails the test.

    The error must say why (a non-empty message) and, when ``permanent`` (a handler's parser), have a truthy
    ``permanent`` attribute, so that the ingest path quarantines the message at the first attempt instead of
    retrying it. The archive's decoder passes ``permanent=False``: a ``DecodeError`` is quarantined at once anyway.
    """
    try:
        return call()
    except allowed as exc:
        assert str(exc).strip(), f"{type(exc).__name__} without a reason"
        assert not permanent or getattr(exc, "permanent", False), f"{type(exc).__name__} is not permanent: {exc}"
        return exc


def avro_container(blocks: list[tuple[int, bytes]], codec: str = "deflate", schema: bytes = b'"bytes"') -> bytes:
    """An Avro object-container file written by hand: a header, then ``(record count, block bytes)`` blocks."""
    import io

    import fastavro

    from tom_mma.inflate import AVRO_HEADER_SCHEMA, AVRO_MAGIC

    sync = b"S" * 16
    out = io.BytesIO()
    meta = {"avro.schema": schema, "avro.codec": codec.encode()}
    fastavro.schemaless_writer(
        out, fastavro.parse_schema(AVRO_HEADER_SCHEMA), {"magic": AVRO_MAGIC, "meta": meta, "sync": sync}
    )
    for count, block in blocks:
        fastavro.schemaless_writer(out, "long", count)
        fastavro.schemaless_writer(out, "long", len(block))
        out.write(block)
        out.write(sync)
    return out.getvalue()


def avro_deflate_bomb() -> bytes:
    """An Avro container whose one deflate block inflates to 1 GiB (about 1 MB of file)."""
    return avro_container([(1, deflate_bomb())])


class _LegacyMany:
    """The ``many.more()``/``reject()`` interface of hypothesis' internals before 6.16x, which hypothesis-jsonschema
    0.23.1 (the latest) still calls in ``from_object_schema``: without it every object schema fails to draw
    (``AttributeError: 'many' object has no attribute 'more'``). Same decisions as the old class."""

    def __init__(self, data, min_size: int, max_size: float, average_size: float) -> None:
        from hypothesis.internal.conjecture.utils import _calc_p_continue

        self.data, self.min_size, self.max_size = data, min_size, max_size
        self.p_continue = _calc_p_continue(average_size - min_size, max_size - min_size)
        self.count = self.rejections = 0
        self.force_stop = False

    def more(self) -> bool:
        if self.min_size == self.max_size:
            go = self.count < self.min_size
        else:
            forced = None
            if self.force_stop or self.count >= self.max_size:
                forced = False
            elif self.count < self.min_size:
                forced = True
            go = self.data.draw_boolean(self.p_continue, forced=forced)
        if go:
            self.count += 1
        return go

    def reject(self, why: str | None = None) -> None:
        self.count -= 1
        self.rejections += 1
        if self.rejections > max(3, 2 * self.count):
            if self.count < self.min_size:
                self.data.mark_invalid(why)
            self.force_stop = True


def schema_strategy(schema: dict) -> st.SearchStrategy:
    """``hypothesis_jsonschema.from_schema(schema)``, working with the installed hypothesis (:class:`_LegacyMany`)."""
    import types

    from hypothesis.internal.conjecture import utils as cu
    from hypothesis_jsonschema import _from_schema, from_schema

    if not hasattr(cu.many, "more") and not isinstance(_from_schema.cu, types.SimpleNamespace):
        _from_schema.cu = types.SimpleNamespace(**{**vars(cu), "many": _LegacyMany})
    utc = st.datetimes(timezones=st.just(__import__("datetime").UTC))
    formats = {
        # formats hypothesis-jsonschema does not generate (uuid), or generates with any offset where the readers
        # take UTC only (date-time, renamed: a standard format cannot be overridden without a warning)
        "uuid": st.uuids().map(str),
        "utc-date-time": utc.map(lambda t: t.isoformat().replace("+00:00", "Z")),
    }
    return from_schema(_utc_times(schema), custom_formats=formats)


def _utc_times(node):
    if isinstance(node, dict):
        return {k: ("utc-date-time" if k == "format" and v == "date-time" else _utc_times(v)) for k, v in node.items()}
    if isinstance(node, list):
        return [_utc_times(v) for v in node]
    return node
