"""Replay alert files through a TOM's handlers, or publish them to Kafka.

``replayalerts`` is a thin command over these functions. Files go through
:class:`~tom_mma_broker.ingest.Ingestor`, the same code path as a message from the stream:
archive, dedup, handler, quarantine.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from .envelope import configured_handlers
from .formats import AVRO_MAGIC, detect_format
from .ingest import Envelope, Ingestor, IngestResult

__all__ = ["alert_files", "configured_handlers", "envelopes_for", "replay_files", "publish_files"]

logger = logging.getLogger(__name__)

ALERT_SUFFIXES = {".avro", ".json", ".xml", ".txt"}


def alert_files(paths: Sequence[str | Path]) -> Iterator[Path]:
    """Expand ``paths`` (files or folders) into alert files, in sorted order.

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


def _is_alert_file(path: Path) -> bool:
    return path.suffix.lower() in ALERT_SUFFIXES or path.name.lower().endswith(".avro.gz")


def _payloads(path: Path) -> list[bytes]:
    """The messages of one file: a gzipped file's content; an Avro file with many alerts, one per alert."""
    from .containers import gunzip, split_container
    from .formats import DecodeError

    payload = path.read_bytes()
    if path.name.lower().endswith(".gz"):
        try:
            payload = gunzip(payload)
        except DecodeError:
            return [payload]  # kept whole: the ingest path quarantines it with the reason
    if payload[:4] == AVRO_MAGIC:
        try:
            return split_container(payload)
        except DecodeError:
            return [payload]
    return [payload]


def _format_header(path: Path, payload: bytes) -> list[tuple[str, bytes]]:
    """The ``_format`` header hop would have sent with this file."""
    suffix = ".avro" if path.name.lower().endswith(".avro.gz") else path.suffix.lower()
    if suffix == ".avro" or payload[:4] == AVRO_MAGIC:
        return [("_format", b"avro")]
    if suffix == ".json":
        return [("_format", b"json")]
    if suffix == ".xml":
        return [("_format", b"voevent")]
    if suffix == ".txt" and detect_format(None, payload) == "gcntextnotice":  # GCN Classic text notice
        return [("_format", b"gcntextnotice")]
    return []


def envelopes_for(files: Sequence[Path], topic: str) -> Iterator[Envelope]:
    """One envelope per alert (per file, or per record of an Avro file), with the ``_format`` header hop would send."""
    for path in files:
        payloads = _payloads(path)
        for i, payload in enumerate(payloads):
            origin = str(path) if len(payloads) == 1 else f"{path}#{i}"
            yield Envelope(topic=topic, payload=payload, headers=_format_header(path, payload), origin=origin)


def replay_files(
    paths: Sequence[str | Path], topic: str, handlers: Mapping[str, object] | None = None, batch_size: int = 100
) -> Iterator[IngestResult]:
    """Run alert files through the handlers of ``topic``; yield one result per alert (per file, or per record).

    Parameters
    ----------
    paths : sequence of path
        Files or folders of alert files.
    topic : str
        The topic the files are replayed as.
    handlers : mapping, optional
        Topic -> handler; default: the TOM's configured ``ALERT_STREAMS`` handlers.
    batch_size : int
        Files per database transaction.
    """
    files = list(alert_files(paths))
    ingestor = Ingestor(configured_handlers(topic) if handlers is None else handlers)
    batch: list[Envelope] = []
    for envelope in envelopes_for(files, topic):
        batch.append(envelope)
        if len(batch) >= batch_size:
            yield from ingestor.ingest(batch)
            batch = []
    if batch:
        yield from ingestor.ingest(batch)


def publish_files(paths: Sequence[str | Path], topic: str, url: str | None, auth=False) -> Iterator[tuple[Path, str]]:
    """Publish alert files to ``topic`` on the broker at ``url``; yield (file, message id).

    Each message gets hop's headers (a new ``_id``, ``_format`` from the file type).
    """
    from .kafka import hop_headers, open_producer

    files = list(alert_files(paths))
    with open_producer(url, topic, auth=auth) as producer:
        for path in files:
            for payload in _payloads(path):
                fmt = dict(_format_header(path, payload)).get("_format", b"blob").decode()
                message_id, headers = hop_headers(fmt)
                producer.write_raw(payload, headers, topic=topic)
                yield path, str(message_id)
        producer.flush()
