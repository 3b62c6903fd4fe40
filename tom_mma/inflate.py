"""Bounded decompression of untrusted bytes: gzip files, raw deflate (Avro blocks), Avro container files.

Alerts carry compressed bytes: ``.avro.gz`` packets, gzipped FITS cutouts and sky maps, Avro blocks written
with the ``deflate`` codec. A few kilobytes of such bytes can inflate to gigabytes (a decompression bomb).
Everything here inflates in chunks with ``zlib.decompressobj(...).decompress(data, max_length)`` and stops
as soon as the output passes a limit, so that a bomb costs at most the limit plus one chunk of memory, and is
refused with the error type the caller names (each parser raises its own "bad alert" error, with the field).

The limit is ``TOM_MMA['MAX_INFLATED_BYTES']`` (default 512 MiB, checked by ``tom_mma.E120``), read when a
function is called without one; outside a configured Django project the default applies.

Examples
--------
>>> import gzip
>>> gunzip(gzip.compress(b"SIMPLE  = T"), limit=100, what="cutout")
b'SIMPLE  = T'
>>> gunzip(gzip.compress(b"x" * 10_000), limit=100, what="cutout")
Traceback (most recent call last):
...
tom_mma.inflate.InflateError: cutout: inflates beyond 100 bytes (TOM_MMA['MAX_INFLATED_BYTES']): refused
"""

from __future__ import annotations

import bz2
import io
import lzma
import zlib
from collections.abc import Callable
from typing import Any

__all__ = [
    "AVRO_HEADER_SCHEMA",
    "AVRO_MAGIC",
    "CHUNK",
    "DEFAULT_MAX_INFLATED_BYTES",
    "GZIP_MAGIC",
    "InflateError",
    "check_avro_container",
    "gunzip",
    "gunzip_head",
    "inflate_raw",
    "max_inflated_bytes",
]

#: 512 MiB: a flat HEALPix map of nside 1024 with its three distance layers (12.6 M pixels x 4 float64
#: columns, 403 MB) fits; LVK's multi-order sky maps (a few MB) and alert packets (tens of KB) are far below
DEFAULT_MAX_INFLATED_BYTES = 512 * 1024 * 1024
#: bytes inflated per step: the most a refused bomb costs above the limit
CHUNK = 1024 * 1024
#: compressed bytes handed to zlib per step (zlib copies what it has not used yet: keep that small)
_PIECE = 64 * 1024
GZIP_MAGIC = b"\x1f\x8b"
_GZIP_WBITS = 16 + zlib.MAX_WBITS
_RAW_WBITS = -zlib.MAX_WBITS
_SETTING = "TOM_MMA['MAX_INFLATED_BYTES']"


class InflateError(ValueError):
    """Compressed bytes that are corrupt or inflate beyond the limit (permanent: retrying cannot help)."""

    permanent = True


def max_inflated_bytes() -> int:
    """``TOM_MMA['MAX_INFLATED_BYTES']``, or the default outside a configured Django project."""
    from django.conf import settings

    if not settings.configured:
        return DEFAULT_MAX_INFLATED_BYTES
    from tom_mma.conf import mma_settings

    return int(mma_settings.MAX_INFLATED_BYTES)


def _too_big(what: str, limit: int, error: Callable[[str], Exception], setting: str = _SETTING) -> Exception:
    return error(f"{what}: inflates beyond {limit} bytes ({setting}): refused")


def _inflate(
    data: bytes,
    wbits: int,
    limit: int,
    what: str,
    error: Callable[[str], Exception],
    keep: int | None,
    members: bool,
    setting: str = _SETTING,
) -> tuple[bytes, int]:
    """Inflate ``data`` in chunks; return (the output, or its first ``keep`` bytes when ``keep`` is set; its length).

    The input is fed :data:`_PIECE` bytes at a time, so that zlib's ``unconsumed_tail`` (a copy of the input not
    yet used) stays small; each call returns at most :data:`CHUNK` bytes.
    """
    out: list[bytes] = []
    kept = total = pos = 0
    view = memoryview(data)
    size = len(view)
    engine = zlib.decompressobj(wbits)
    try:
        while True:
            if engine.unconsumed_tail:
                piece: Any = engine.unconsumed_tail
            else:
                piece = view[pos : pos + _PIECE]
                pos += len(piece)
            chunk = engine.decompress(piece, CHUNK)
            del piece
            total += len(chunk)
            if total > limit:
                # the error's traceback keeps this frame alive (a quarantined message keeps its error until the
                # batch ends): drop what was inflated first, or each bomb of a batch would hold the limit
                out.clear()
                del chunk
                raise _too_big(what, limit, error, setting)
            if chunk and (keep is None or kept < keep):
                out.append(chunk if keep is None else chunk[: keep - kept])
                kept += len(out[-1])
            produced = bool(chunk)
            del chunk
            if engine.eof:
                # what the decoder did not use of the last piece it was given is the start of what follows
                pos -= len(engine.unused_data)
                # gzip allows several members one after the other (gzip.decompress reads them all); padding of NULs
                # after the last member is tolerated, as gzip(1) does
                if not members or bytes(view[pos : pos + 2]) != GZIP_MAGIC:
                    break
                engine = zlib.decompressobj(wbits)
            elif pos >= size and not engine.unconsumed_tail and not produced:
                # the input is used up and nothing more comes out: the stream was cut short
                raise error(f"corrupt {what}: compressed data cut short (no end of stream)")
    except zlib.error as exc:
        raise error(f"corrupt {what}: {exc}") from exc
    return b"".join(out), total


def gunzip(
    data: bytes, *, limit: int | None = None, what: str = "gzip data", error: Callable[[str], Exception] = InflateError
) -> bytes:
    """The content of gzip bytes (every member), refused past ``limit`` bytes inflated.

    Parameters
    ----------
    data : bytes
        A gzip file.
    limit : int, optional
        Most bytes the content may have (default: :func:`max_inflated_bytes`).
    what : str
        How errors name the data (a field: ``cutoutScience.stampData``, ``event.skymap``).
    error : callable
        The exception type (or factory) raised with the reason; default :class:`InflateError`.

    Raises
    ------
    error
        If the bytes are corrupt, cut short, or inflate beyond ``limit``.
    """
    limit = max_inflated_bytes() if limit is None else limit
    return _inflate(bytes(data), _GZIP_WBITS, limit, what, error, keep=None, members=True)[0]


def inflate_raw(
    data: bytes,
    *,
    limit: int | None = None,
    what: str = "deflate data",
    error: Callable[[str], Exception] = InflateError,
) -> bytes:
    """The content of raw deflate bytes (an Avro ``deflate`` block), refused past ``limit`` bytes inflated.

    Raises
    ------
    error
        If the bytes are corrupt, cut short, or inflate beyond ``limit``.

    Examples
    --------
    >>> engine = zlib.compressobj(wbits=-15)
    >>> inflate_raw(engine.compress(b"abc") + engine.flush(), limit=10)
    b'abc'
    """
    limit = max_inflated_bytes() if limit is None else limit
    return _inflate(bytes(data), _RAW_WBITS, limit, what, error, keep=None, members=False)[0]


def gunzip_head(
    data: bytes,
    *,
    head: int,
    limit: int | None = None,
    what: str = "gzip data",
    error: Callable[[str], Exception] = InflateError,
    setting: str = _SETTING,
) -> tuple[bytes, int]:
    """The first ``head`` bytes of gzip content and its whole size, inflating all of it with one chunk of memory.

    For bytes that are stored as they came but must be known to inflate to ``limit`` at most (a gzipped FITS
    cutout, which the TOM may open later).

    ``setting`` names the limit in the error message.

    Raises
    ------
    error
        If the bytes are corrupt, cut short, or inflate beyond ``limit``.

    Examples
    --------
    >>> import gzip
    >>> gunzip_head(gzip.compress(b"SIMPLE  = T" + b" " * 1000), head=6, limit=2000)
    (b'SIMPLE', 1011)
    """
    limit = max_inflated_bytes() if limit is None else limit
    return _inflate(bytes(data), _GZIP_WBITS, limit, what, error, keep=head, members=True, setting=setting)


def _bounded_stream_size(engine: Any, data: bytes, budget: int, what: str, error: Callable[[str], Exception]) -> int:
    """Inflated size of one bz2/xz block, read through a ``max_length`` decompressor, output discarded."""
    total = 0
    pending = data
    try:
        while True:
            chunk = engine.decompress(pending, CHUNK)
            pending = b""
            total += len(chunk)
            if total > budget:
                return total
            if engine.eof or (not chunk and engine.needs_input):
                return total
    except (OSError, EOFError, lzma.LZMAError) as exc:
        raise error(f"corrupt {what}: {exc}") from exc


#: the first bytes of an Avro object container file
AVRO_MAGIC = b"Obj\x01"
#: the header of an Avro object container file (magic, metadata, sync marker), as the Avro specification has it
AVRO_HEADER_SCHEMA = {
    "type": "record",
    "name": "org.apache.avro.file.Header",
    "fields": [
        {"name": "magic", "type": {"type": "fixed", "name": "Magic", "size": 4}},
        {"name": "meta", "type": {"type": "map", "values": "bytes"}},
        {"name": "sync", "type": {"type": "fixed", "name": "Sync", "size": 16}},
    ],
}
#: the most memory an xz block's decoder may take (xz -9 needs 65 MiB; bzip2 needs under 4 MiB at any level)
XZ_MEMLIMIT = 80 * 1024 * 1024
#: Avro codecs whose inflated size is bounded here (snappy and zstandard are refused: see check_avro_container)
AVRO_CODECS = ("null", "deflate", "bzip2", "xz")


def check_avro_container(
    payload: bytes,
    *,
    limit: int | None = None,
    what: str = "Avro file",
    error: Callable[[str], Exception] = InflateError,
) -> str:
    """Check, in bounded memory, that an Avro container's blocks inflate to ``limit`` bytes at most.

    Call it before handing the file to ``fastavro.reader``, which inflates each block whole. The blocks are
    inflated chunk by chunk and the output thrown away, so the check itself never holds more than a chunk.
    Codecs other than :data:`AVRO_CODECS` (snappy, zstandard) are refused: their decoders cannot stop at a
    size. Errors in the file's structure are left to the reader, which says what is wrong.

    Returns
    -------
    str
        The file's codec.

    Raises
    ------
    error
        For a codec not in :data:`AVRO_CODECS`, or blocks that inflate beyond ``limit`` in all.
    """
    import fastavro

    limit = max_inflated_bytes() if limit is None else limit
    buf = io.BytesIO(payload)
    try:
        header = fastavro.schemaless_reader(buf, fastavro.parse_schema(AVRO_HEADER_SCHEMA), None)
        codec = bytes(header["meta"].get("avro.codec", b"null")).decode("utf-8", "replace")
    except Exception:  # not even a header: the reader will say so
        return "null"
    if codec not in AVRO_CODECS:
        raise error(f"{what}: Avro codec {codec[:40]!r} is not read (only {', '.join(AVRO_CODECS)})")
    if codec == "null":
        return codec
    total = 0
    end = len(payload)
    while buf.tell() < end:
        try:
            fastavro.schemaless_reader(buf, "long", None)  # the block's record count
            size = fastavro.schemaless_reader(buf, "long", None)
        except Exception:
            return codec  # a cut or corrupt block: the reader will say so
        block = buf.read(max(size, 0))
        buf.read(16)  # the sync marker (checked by the reader)
        budget = limit - total
        if codec == "deflate":
            total += _inflate(block, _RAW_WBITS, budget, what, error, keep=0, members=False)[1]
        elif codec == "bzip2":
            total += _bounded_stream_size(bz2.BZ2Decompressor(), block, budget, what, error)
        else:
            # the stream names its dictionary's size (up to 1.5 GiB): liblzma refuses to allocate past memlimit
            total += _bounded_stream_size(lzma.LZMADecompressor(memlimit=XZ_MEMLIMIT), block, budget, what, error)
        if total > limit:
            raise _too_big(what, limit, error)
    return codec
