"""Split an Avro object-container file with many records into one single-record file per record.

An alert file with many alerts (Fink's data-transfer files) is many messages: ``replayalerts`` and
``publish_files`` send each alert on its own, with its own archive key, as a broker would. The
records' bytes are copied, not decoded and encoded again.
"""

from __future__ import annotations

import io

import fastavro

from tom_mma.inflate import GZIP_MAGIC, inflate_raw, max_inflated_bytes
from tom_mma.inflate import gunzip as gunzip_bounded

from .formats import _HEADER_SCHEMA, AVRO_MAGIC, DecodeError, _parsed_schema

__all__ = ["split_container", "gunzip"]


def gunzip(payload: bytes) -> bytes:
    """The content of gzipped bytes (other bytes unchanged); ``DecodeError`` when corrupt or too big inflated."""
    if payload[:2] != GZIP_MAGIC:
        return payload
    # in chunks, refused past TOM_MMA['MAX_INFLATED_BYTES'] (a decompression bomb costs at most that much)
    return gunzip_bounded(payload, what="gzip file", error=DecodeError)


def split_container(payload: bytes) -> list[bytes]:
    """One Avro container file per record of ``payload`` (a file with one record is returned as is).

    Raises
    ------
    DecodeError
        If the file is not a complete Avro container (null or deflate codec).
    """
    buf = io.BytesIO(payload)
    try:
        header = fastavro.schemaless_reader(buf, _HEADER_SCHEMA, None)
    except Exception as exc:
        raise DecodeError(f"not an Avro container file: {exc}") from exc
    if header["magic"] != AVRO_MAGIC:
        raise DecodeError("not an Avro container file: bad magic bytes")
    meta = header["meta"]
    codec = bytes(meta.get("avro.codec", b"null")).decode("utf-8", "replace")
    if codec not in ("null", "deflate"):
        return [payload]
    schema_bytes = meta.get("avro.schema")
    if not schema_bytes:
        raise DecodeError("Avro container file without a schema")
    try:
        schema = _parsed_schema(bytes(schema_bytes))
    except Exception as exc:  # fastavro raises KeyError, SchemaParseException, ... for a bad schema
        raise DecodeError(f"invalid Avro schema: {type(exc).__name__}: {exc}") from exc
    sync = header["sync"]
    records: list[bytes] = []
    budget = max_inflated_bytes()
    try:
        while buf.tell() < len(payload):
            count = fastavro.schemaless_reader(buf, "long", None)
            size = fastavro.schemaless_reader(buf, "long", None)
            block = buf.read(size)
            if len(block) != size or buf.read(16) != sync:
                raise DecodeError("truncated or corrupt Avro block")
            data = (
                inflate_raw(block, limit=budget, what="Avro deflate block", error=DecodeError)
                if codec == "deflate"
                else block
            )
            budget -= len(data)
            view = io.BytesIO(data)
            for _ in range(count):
                start = view.tell()
                fastavro.schemaless_reader(view, schema, None)
                records.append(data[start : view.tell()])
    except DecodeError:
        raise
    except Exception as exc:
        raise DecodeError(f"corrupt Avro data: {type(exc).__name__}: {exc}") from exc
    if len(records) <= 1:
        return [payload]
    out = io.BytesIO()
    fastavro.schemaless_writer(
        out,
        _HEADER_SCHEMA,
        {"magic": AVRO_MAGIC, "meta": {"avro.schema": meta["avro.schema"], "avro.codec": b"null"}, "sync": sync},
    )
    head = out.getvalue()
    files = []
    for record in records:
        block = io.BytesIO()
        fastavro.schemaless_writer(block, "long", 1)
        fastavro.schemaless_writer(block, "long", len(record))
        files.append(head + block.getvalue() + record + sync)
    return files
