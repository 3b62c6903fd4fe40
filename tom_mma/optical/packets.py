"""Decode optical alert packets: ZTF, Rubin (LSST) and Fink, from a broker message, a file or a folder.

The wire forms read here, each checked against its producer's own code or files:

* **Avro object-container files** (ZTF's alerts as IPAC sends them, schemas 3.x and 4.x; Fink's
  data-transfer ``ftransfer`` files, many alerts each; ``fakeAlert.avro`` of ``lsst-alert-packet``):
  the writer schema travels in the file. A file may be gzipped (``.avro.gz``).
* **Fink's livestream** (fink-client 12.3, ``fink_client/consumer.py``, ``AlertConsumer.process_message``):
  the Kafka *key* is the writer schema as JSON text, the *value* one schemaless Avro record.
* **Rubin's Confluent wire frames**: a zero magic byte, a 4-byte big-endian schema id, then one
  schemaless Avro record. The id is resolved only from the schemas that the ``lsst-alert-packet``
  package ships (``lsst.v10_0`` to its latest; id ``major * 100 + minor``, as its
  ``Schema.get_schema_id`` computes it): a schema registry is never asked.
* **Schemaless Rubin records** without a frame, read with a known version
  (``TOM_MMA['RUBIN_SCHEMA_VERSION']``).

Every failure raises :class:`AlertFormatError`, whose ``permanent`` attribute tells the ingest path
to quarantine the message at once with the reason (trying again cannot help).
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import fastavro

from tom_mma.inflate import AVRO_MAGIC, check_avro_container, gunzip, gunzip_head

__all__ = [
    "AlertFormatError",
    "AVRO_MAGIC",
    "read_container",
    "decode_fink_message",
    "decode_confluent_frame",
    "decode_schemaless",
    "rubin_schema",
    "rubin_schema_ids",
    "decode_payload",
    "alert_files",
    "read_alert_file",
    "iter_records",
    "check_cutout",
]

_GZIP_MAGIC = b"\x1f\x8b"
_FITS_START = b"SIMPLE  ="
#: the oldest Rubin schema major version read here (older ones predate the alert-production schemas)
RUBIN_MIN_MAJOR = 10


class AlertFormatError(ValueError):
    """An alert that cannot be read: not its schema, truncated, an unknown schema id, a corrupt cutout.

    ``permanent = True``: the ingest path quarantines the message at the first attempt.
    """

    permanent = True


# -- Avro containers -------------------------------------------------------------------------------
def gunzip_if_needed(payload: bytes) -> bytes:
    """``payload`` itself, or its gzip content when it is gzipped.

    Raises
    ------
    AlertFormatError
        If it is gzipped but corrupt, cut short, or inflates beyond ``TOM_MMA['MAX_INFLATED_BYTES']``.
    """
    if payload[:2] != _GZIP_MAGIC:
        return payload
    # in chunks, refused past TOM_MMA['MAX_INFLATED_BYTES']: a decompression bomb costs at most that much memory
    return gunzip(payload, what="gzip file", error=AlertFormatError)


def read_container(payload: bytes) -> tuple[list[dict], dict]:
    """All records of an Avro object-container file (gzipped or not) and its writer schema.

    Raises
    ------
    AlertFormatError
        If the bytes are not a complete Avro container file.
    """
    payload = gunzip_if_needed(payload)
    if payload[:4] != AVRO_MAGIC:
        raise AlertFormatError("not an Avro container file (no 'Obj\\x01' magic)")
    # fastavro inflates each block whole: bound the blocks' inflated size first, in chunks
    check_avro_container(payload, what="Avro file", error=AlertFormatError)
    try:
        reader = fastavro.reader(io.BytesIO(payload))
        records = list(reader)
    except Exception as exc:  # fastavro raises many kinds (EOFError, ValueError, struct.error...)
        raise AlertFormatError(f"corrupt or truncated Avro file: {type(exc).__name__}: {exc}") from exc
    if not records:
        raise AlertFormatError("Avro container file with no record")
    return records, reader.writer_schema


# -- schemaless records ------------------------------------------------------------------------
def _read_one(data: bytes, parsed: Any, what: str) -> dict:
    buf = io.BytesIO(data)
    try:
        record = fastavro.schemaless_reader(buf, parsed, None)
    except Exception as exc:
        raise AlertFormatError(
            f"{what}: the record does not match its schema or is truncated ({type(exc).__name__}: {exc})"
        ) from exc
    if buf.tell() != len(data):
        raise AlertFormatError(f"{what}: {len(data) - buf.tell()} bytes after the record: it does not match its schema")
    if not isinstance(record, dict):
        raise AlertFormatError(f"{what}: the schema's top level is not a record")
    return record


def _strip_parsed_marks(schema: Any) -> Any:
    # schemas dumped by fastavro itself (Fink's ftransfer schema files) carry bookkeeping keys
    if isinstance(schema, dict):
        return {
            k: _strip_parsed_marks(v) for k, v in schema.items() if k not in ("__fastavro_parsed", "__named_schemas")
        }
    if isinstance(schema, list):
        return [_strip_parsed_marks(v) for v in schema]
    return schema


@lru_cache(maxsize=32)
def _parse_schema_text(text: bytes) -> Any:
    try:
        schema = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AlertFormatError(f"the message key is not an Avro schema in JSON ({exc})") from exc
    try:
        return fastavro.parse_schema(_strip_parsed_marks(schema))
    except Exception as exc:
        raise AlertFormatError(f"the message key is not a valid Avro schema: {type(exc).__name__}: {exc}") from exc


def decode_fink_message(value: bytes, key: bytes | str | None) -> dict:
    """One alert of Fink's livestream: schemaless Avro ``value``, its writer schema (JSON) as ``key``.

    The schema is parsed once per distinct key (a stream has few).

    Raises
    ------
    AlertFormatError
        If the key is not a schema, or the value does not match it.
    """
    if key is None or key in (b"", ""):
        raise AlertFormatError("Fink livestream message without a key: its writer schema is missing")
    text = key.encode() if isinstance(key, str) else bytes(key)
    return _read_one(bytes(value), _parse_schema_text(text), "Fink livestream message")


def decode_schemaless(data: bytes, schema: dict | str | bytes) -> dict:
    """One schemaless Avro record read with ``schema`` (a parsed schema, or its JSON text)."""
    parsed = (
        _parse_schema_text(schema.encode() if isinstance(schema, str) else schema)
        if isinstance(schema, str | bytes)
        else schema
    )
    return _read_one(data, parsed, "schemaless Avro record")


# -- Rubin schemas ---------------------------------------------------------------------------------
def _rubin_root() -> Path:
    try:
        import lsst.alert.packet as packet
    except ImportError as exc:  # an optional dependency: the error says which
        raise AlertFormatError(
            "Rubin alerts need the 'lsst-alert-packet' package (pip install tom-mma[optical])"
        ) from exc
    return Path(packet.__file__).parent / "schema"


@lru_cache(maxsize=1)
def _rubin_versions() -> dict[int, tuple[int, int, Path]]:
    root = _rubin_root()
    found: dict[int, tuple[int, int, Path]] = {}
    for path in root.glob("*/*/lsst.v*_*.alert.avsc"):
        match = re.fullmatch(r"lsst\.v(\d+)_(\d+)\.alert\.avsc", path.name)
        if not match:
            continue
        major, minor = int(match[1]), int(match[2])
        if major >= RUBIN_MIN_MAJOR:
            found[major * 100 + minor] = (major, minor, path)
    return found


def rubin_schema_ids() -> dict[int, str]:
    """Schema id -> version name (``lsst.v10_0``...) of every Rubin schema shipped by lsst-alert-packet."""
    return {sid: f"lsst.v{major}_{minor}" for sid, (major, minor, _) in sorted(_rubin_versions().items())}


def latest_rubin_version() -> str:
    """The newest Rubin schema version that lsst-alert-packet ships, e.g. ``lsst.v11_1``."""
    ids = rubin_schema_ids()
    return ids[max(ids)]


@lru_cache(maxsize=16)
def rubin_schema(version: str | int) -> Any:
    """The parsed Rubin alert schema ``version`` (``"lsst.v10_0"``, ``"10.0"``, ``"latest"`` or an id).

    Raises
    ------
    AlertFormatError
        For a version lsst-alert-packet does not ship.
    """
    versions = _rubin_versions()
    if version == "latest":
        schema_id = max(versions)
    elif isinstance(version, int):
        schema_id = version
    else:
        match = re.fullmatch(r"(?:lsst\.v)?(\d+)[._](\d+)", str(version))
        if not match:
            raise AlertFormatError(f"not a Rubin schema version: {version!r}")
        schema_id = int(match[1]) * 100 + int(match[2])
    if schema_id not in versions:
        known = ", ".join(rubin_schema_ids().values())
        raise AlertFormatError(f"unknown Rubin schema id {schema_id} (lsst-alert-packet ships {known})")
    # each version in its own namespace of named types: versions reuse the same names
    return fastavro.schema.load_schema(str(versions[schema_id][2]), named_schemas={})


def decode_confluent_frame(frame: bytes) -> tuple[dict, str]:
    """A Rubin alert in the Confluent wire format: ``0``, a 4-byte schema id, schemaless Avro.

    Returns
    -------
    record, version : dict, str
        The alert and its schema version (``lsst.v10_0``...).

    Raises
    ------
    AlertFormatError
        If the frame is cut short, its magic byte is not 0, its schema id is not one that
        lsst-alert-packet ships, or the record does not match that schema.
    """
    if len(frame) < 5:
        raise AlertFormatError(f"truncated Confluent frame ({len(frame)} bytes; the header alone is 5)")
    if frame[0] != 0:
        raise AlertFormatError(f"not a Confluent frame: magic byte {frame[0]}, not 0")
    schema_id = int.from_bytes(frame[1:5], "big")
    parsed = rubin_schema(schema_id)
    return _read_one(frame[5:], parsed, f"Rubin alert (schema id {schema_id})"), rubin_schema_ids()[schema_id]


def decode_payload(payload: bytes, key: bytes | str | None = None, rubin_version: str | None = None) -> list[dict]:
    """The alert records of one message or file, whatever its wire form.

    An Avro container (gzipped or not) gives all its records; a Confluent frame one Rubin record;
    bytes with a key that is a JSON schema one Fink livestream record; other bytes one Rubin
    record read with ``rubin_version``.

    Raises
    ------
    AlertFormatError
        If none of these forms reads the bytes.
    """
    payload = bytes(payload)
    if payload[:4] == AVRO_MAGIC or payload[:2] == _GZIP_MAGIC:
        return read_container(payload)[0]
    if key not in (None, b"", ""):
        text = key.encode() if isinstance(key, str) else bytes(key)
        if text.lstrip()[:1] == b"{":
            return [decode_fink_message(payload, text)]
    if payload[:1] == b"\x00":
        return [decode_confluent_frame(payload)[0]]
    if rubin_version:
        return [decode_schemaless(payload, rubin_schema(rubin_version))]
    raise AlertFormatError(
        "unrecognised alert bytes: not an Avro file, a Fink message with its schema key, or a Confluent frame"
    )


# -- files -----------------------------------------------------------------------------------------
def _is_alert_file(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(".avro") or name.endswith(".avro.gz")


def alert_files(paths: Sequence[str | Path]) -> Iterator[Path]:
    """Expand files and folders into ``.avro`` / ``.avro.gz`` files, in sorted order.

    Raises
    ------
    FileNotFoundError
        For a path that does not exist.
    """
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise FileNotFoundError(f"no such file or folder: {path}")
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file() and _is_alert_file(p))
        else:
            yield path


def read_alert_file(path: str | Path) -> list[dict]:
    """The alert records of one file (an Avro container, gzipped or not)."""
    return read_container(Path(path).read_bytes())[0]


def iter_records(paths: Sequence[str | Path]) -> Iterator[tuple[Path, dict]]:
    """Every alert record of every file under ``paths``, with its file."""
    for path in alert_files(paths):
        for record in read_alert_file(path):
            yield path, record


# -- cutouts ---------------------------------------------------------------------------------------
def _cutout_limit() -> int:
    from django.conf import settings

    if not settings.configured:
        return 16 * 1024 * 1024
    from tom_mma.conf import mma_settings

    return int(mma_settings.MAX_CUTOUT_BYTES)


def check_cutout(data: bytes, what: str, limit: int | None = None) -> None:
    """Refuse a cutout that is not FITS (plain or gzipped), or larger than ``limit`` bytes (inflated).

    A corrupt stamp is a bad alert; so is one that inflates beyond ``limit`` (default
    ``TOM_MMA['MAX_CUTOUT_BYTES']``): a gzipped stamp is inflated whole, chunk by chunk with the output thrown
    away, so a decompression bomb costs one chunk of memory.

    Raises
    ------
    AlertFormatError
        If the bytes are neither FITS nor gzipped FITS, are corrupt gzip, or are too big.

    Examples
    --------
    >>> check_cutout(b"SIMPLE  =                    T" + b" " * 50, "science")
    >>> check_cutout(b"garbage", "science")
    Traceback (most recent call last):
    ...
    tom_mma.optical.packets.AlertFormatError: corrupt science cutout: not FITS or gzipped FITS
    """
    limit = _cutout_limit() if limit is None else limit
    head = bytes(data[:80])
    if head[:2] == _GZIP_MAGIC:
        # all of it is inflated (with one chunk of memory, the output thrown away): a cutout is kept as a FITS
        # file that the TOM opens later, and a gzip bomb must not get that far
        head, _ = gunzip_head(
            data,
            head=80,
            limit=limit,
            what=f"{what} cutout",
            error=AlertFormatError,
            setting="TOM_MMA['MAX_CUTOUT_BYTES']",
        )
    elif len(data) > limit:
        raise AlertFormatError(f"{what} cutout: {len(data)} bytes, above TOM_MMA['MAX_CUTOUT_BYTES'] = {limit}")
    if not head.startswith(_FITS_START):
        raise AlertFormatError(f"corrupt {what} cutout: not FITS or gzipped FITS")
