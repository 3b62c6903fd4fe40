"""Decode Kafka message payloads into hop models and archive-ready content.

Formats follow hop's ``_format`` header (``json``, ``avro``, ``voevent``, ``circular``,
``gcntextnotice``, ``blob``); without one, JSON, Avro object-container files, VOEvent XML and
GCN Classic text notices (``TITLE:``/``NOTICE_DATE:`` lines) are recognised by their bytes.
Decoding never unpickles anything.

Decoded content is untrusted: before it reaches the archive's JSON column,
:class:`ArchiveJSONEncoder` replaces what a database refuses to store (NUL characters, which
PostgreSQL's ``jsonb`` and ``text`` reject; lone UTF-16 surrogates; integers beyond 64 bits are
kept, through the standard library). The raw bytes are always kept as they came.

Avro object-container files repeat their writer schema in every message; parsing it is most of
the cost of a decode, so parsed schemas are cached by their bytes (a stream has few schemas).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Any

import fastavro
import orjson
from django.core.serializers.json import DjangoJSONEncoder

from tom_mma.hopmessages import header_value
from tom_mma.inflate import AVRO_HEADER_SCHEMA, AVRO_MAGIC, check_avro_container, inflate_raw, max_inflated_bytes

__all__ = [
    "DecodeError",
    "Decoded",
    "detect_format",
    "decode",
    "read_avro_container",
    "ArchiveJSONEncoder",
    "UnstorableContent",
    "clean_text",
]

_HEADER_SCHEMA = fastavro.parse_schema(AVRO_HEADER_SCHEMA)


class DecodeError(ValueError):
    """A payload that cannot be decoded in the format it claims (or any known format)."""


class UnstorableContent(ValueError):
    """Decoded content that cannot be written as JSON even after cleaning (see :class:`ArchiveJSONEncoder`)."""


def clean_text(text: str, nul: str = "\\x00") -> str:
    """``text`` without what a database text column refuses: NUL becomes ``nul``, lone surrogates ``?``.

    Examples
    --------
    >>> clean_text("bad\\x00byte")
    'bad\\\\x00byte'
    >>> clean_text("fine")
    'fine'
    """
    if "\x00" in text:
        text = text.replace("\x00", nul)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


@dataclass(frozen=True)
class Decoded:
    """A decoded payload: the hop model handed to handlers and the content kept in the archive."""

    format: str
    model: Any
    content: Any


def detect_format(headers: list[tuple[str, bytes]] | None, payload: bytes) -> str:
    """The payload's format: hop's ``_format`` header, else sniffed from the bytes.

    Examples
    --------
    >>> detect_format([("_format", b"avro")], b"")
    'avro'
    >>> detect_format(None, b'{"a": 1}')
    'json'
    >>> detect_format(None, b"Obj\\x01...")
    'avro'
    >>> detect_format(None, b"\\x00\\x01")
    'blob'
    >>> detect_format(None, b"TITLE:           GCN/LVC NOTICE\\nNOTICE_DATE:     Thu 17 Aug 17")
    'gcntextnotice'
    """
    value = header_value(headers, "_format")
    if value is not None:
        text = value.decode("utf-8", "replace").replace("\x00", "").strip().lower()
        return text if text.isprintable() and text else "blob"
    if payload[:4] == AVRO_MAGIC:
        return "avro"
    stripped = payload.lstrip()
    if stripped[:1] in (b"{", b"["):
        return "json"
    if stripped[:1] == b"<":
        return "voevent"
    if _GCN_TEXT.match(stripped[:4096]):
        return "gcntextnotice"
    return "blob"


# GCN Classic text notices start with their TITLE: line (NOTICE_DATE: follows); both are tolerated first
_GCN_TEXT = re.compile(rb"(TITLE|NOTICE_DATE):[ \t]")


@lru_cache(maxsize=64)
def _parsed_schema(schema_bytes: bytes) -> Any:
    return fastavro.parse_schema(json.loads(schema_bytes))


def read_avro_container(payload: bytes) -> tuple[list[dict], dict]:
    """Read all records of an Avro object-container file, parsing its schema once per distinct schema.

    Parameters
    ----------
    payload : bytes
        The whole file.

    Returns
    -------
    records, schema : list of dict, dict
        The records and the (parsed) writer schema.

    Raises
    ------
    DecodeError
        If the bytes are not a complete Avro file.
    """
    buf = io.BytesIO(payload)
    try:
        header = fastavro.schemaless_reader(buf, _HEADER_SCHEMA, None)
    except Exception as exc:
        raise DecodeError(f"not an Avro container file: {exc}") from exc
    if header["magic"] != AVRO_MAGIC:
        raise DecodeError("not an Avro container file: bad magic bytes")
    meta = header["meta"]
    codec = bytes(meta.get("avro.codec", b"null")).decode("utf-8", "replace")  # a mutated name is not UTF-8
    schema_bytes = meta.get("avro.schema")
    if not schema_bytes:
        raise DecodeError("Avro container file without a schema")
    if codec not in ("null", "deflate"):
        # rarer codecs (bzip2, xz): let fastavro do all of it, once their inflated size is known to be bounded
        # (snappy and zstandard are refused: their decoders cannot stop at a size)
        check_avro_container(payload, what="Avro file", error=DecodeError)
        try:
            reader = fastavro.reader(io.BytesIO(payload))
            return list(reader), reader.writer_schema
        except Exception as exc:
            raise DecodeError(f"corrupt Avro ({codec}): {exc}") from exc
    try:
        schema = _parsed_schema(bytes(schema_bytes))
    except Exception as exc:
        raise DecodeError(f"invalid Avro schema: {type(exc).__name__}: {exc}") from exc
    sync = header["sync"]
    records: list[dict] = []
    end = len(payload)
    budget = max_inflated_bytes()  # for all the blocks of the file together
    try:
        while buf.tell() < end:
            count = fastavro.schemaless_reader(buf, "long", None)
            size = fastavro.schemaless_reader(buf, "long", None)
            block = buf.read(size)
            if len(block) != size:
                raise DecodeError("truncated Avro block")
            if buf.read(16) != sync:
                raise DecodeError("Avro sync marker mismatch (corrupt or truncated file)")
            if codec == "deflate":  # in chunks, refused past the budget (a decompression bomb)
                block = inflate_raw(block, limit=budget, what="Avro deflate block", error=DecodeError)
                budget -= len(block)
            data = io.BytesIO(block)
            for _ in range(count):
                records.append(fastavro.schemaless_reader(data, schema, None))
    except DecodeError:
        raise
    except Exception as exc:
        raise DecodeError(f"corrupt Avro data: {type(exc).__name__}: {exc}") from exc
    return records, schema


def _decode_json(payload: bytes) -> Decoded:
    from hop.models import JSONBlob

    try:
        content = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DecodeError(f"invalid JSON: {exc}") from exc
    except RecursionError as exc:  # nested deeper than Python's recursion limit
        raise DecodeError(f"invalid JSON: nested too deeply ({exc})") from exc
    return Decoded("json", JSONBlob(content=content), content)


def _decode_avro(payload: bytes) -> Decoded:
    from hop.models import AvroBlob

    records, schema = read_avro_container(payload)
    if not records:
        raise DecodeError("Avro container file with no record")
    # hop >= 0.11 hands a single record as one dict
    content = records[0] if len(records) == 1 else records
    model = AvroBlob(content=content, schema=schema, single_record=len(records) == 1)
    return Decoded("avro", model, content)


def _decode_hop_model(fmt: str, payload: bytes) -> Decoded:
    from hop.io import Deserializer

    try:
        model = Deserializer[fmt.upper()].value.deserialize(payload)
    except KeyError as exc:
        raise DecodeError(f"unknown format {fmt!r}") from exc
    except Exception as exc:
        raise DecodeError(f"invalid {fmt}: {type(exc).__name__}: {exc}") from exc
    content = model.asdict() if hasattr(model, "asdict") else getattr(model, "__dict__", None)
    return Decoded(fmt, model, content)


def decode(fmt: str, payload: bytes) -> Decoded:
    """Decode ``payload`` in format ``fmt``.

    Raises
    ------
    DecodeError
        With the reason, if the bytes are not valid in that format.
    """
    if fmt == "json":
        return _decode_json(payload)
    if fmt == "avro":
        return _decode_avro(payload)
    if fmt == "blob":
        from hop.models import Blob

        return Decoded("blob", Blob(content=payload), None)
    return _decode_hop_model(fmt, payload)


def _orjson_default(o: Any) -> Any:
    if isinstance(o, bytes | bytearray | memoryview):
        data = bytes(o)
        return {"$bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    if isinstance(o, Decimal):
        return str(o)
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


class ArchiveJSONEncoder(DjangoJSONEncoder):
    """JSON for archived content: bytes become ``{"$bytes": n, "sha256": ...}``, NaN becomes null.

    Byte fields (image cutouts) stay in the raw payload; the content keeps only their size and
    digest, so that the JSON column stays small and queryable. Encoding uses orjson (about ten
    times faster than the standard library on alert packets: it is on ingest's hot path).

    The content may hold what a database refuses (the payload is untrusted): NUL characters
    (PostgreSQL rejects ``\\u0000`` in ``jsonb``) become U+FFFD, lone surrogates ``?``, NaN and
    infinities null; integers beyond 64 bits, which orjson refuses, go through the standard
    library. Content that still cannot be written raises :class:`UnstorableContent`.

    Examples
    --------
    >>> ArchiveJSONEncoder().encode({"cutout": b"abc", "x": float("nan")})[:28]
    '{"cutout":{"$bytes":3,"sha25'
    >>> ArchiveJSONEncoder().encode({"a": "x\\x00y"}) == '{"a":"x\\ufffdy"}'
    True
    >>> ArchiveJSONEncoder().encode({"big": 2**70})
    '{"big": 1180591620717411303424}'
    """

    def encode(self, o: Any) -> str:
        """``o`` as JSON text (see the class docstring)."""
        try:
            text = orjson.dumps(o, default=_orjson_default, option=orjson.OPT_NON_STR_KEYS)
        except TypeError:  # orjson.JSONEncodeError: surrogates, huge integers, deep nesting
            return _encode_cleaned(o)
        if b"\\u0000" in text:  # rare: clean only then (a cheap scan of the encoded bytes)
            return _encode_cleaned(o)
        return text.decode()


def _clean(o: Any) -> Any:
    if isinstance(o, str):
        return clean_text(o, nul="\ufffd")  # in content, NUL becomes the replacement character
    if isinstance(o, dict):
        return {_clean(k): _clean(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_clean(v) for v in o]
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return o


class _StdlibEncoder(DjangoJSONEncoder):
    def default(self, o: Any) -> Any:
        if isinstance(o, bytes | bytearray | memoryview | Decimal):
            return _orjson_default(o)
        return super().default(o)


def _encode_cleaned(o: Any) -> str:
    try:
        cleaned = _clean(o)
        try:
            return orjson.dumps(cleaned, default=_orjson_default, option=orjson.OPT_NON_STR_KEYS).decode()
        except TypeError:
            return json.dumps(cleaned, cls=_StdlibEncoder, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise UnstorableContent(f"content cannot be stored as JSON: {type(exc).__name__}: {exc}") from exc
