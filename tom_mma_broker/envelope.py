"""A message on its way into the archive (:class:`Envelope`), what became of it, and which handler takes it.

Built by the reliable stream from a Kafka message, by ``replayalerts`` from a file, and by re-handling from
the archive; consumed by :class:`tom_mma_broker.ingest.Ingestor`.
"""

from __future__ import annotations

import enum
import hashlib
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils.module_loading import import_string

from tom_mma.hopmessages import decode_headers, message_id

from .conf import broker_settings
from .formats import DecodeError, decode, detect_format
from .models import ArchivedAlert

__all__ = [
    "Envelope",
    "HandlerMap",
    "IngestResult",
    "KEY_MAX_LENGTH",
    "OVERSIZED_KEPT_BYTES",
    "Outcome",
    "OversizedMessage",
    "TOPIC_MAX_LENGTH",
    "configured_handlers",
    "kafka_time",
    "summarize",
]

Handler = Callable[[Any, Any], Any]

#: how much of an oversized message the archive keeps (for a person to see what it was)
OVERSIZED_KEPT_BYTES = 4096


class OversizedMessage(DecodeError):
    """A message larger than ``TOM_MMA_BROKER['MAX_MESSAGE_BYTES']``: archived truncated and quarantined."""


KEY_MAX_LENGTH = ArchivedAlert._meta.get_field("key").max_length
TOPIC_MAX_LENGTH = ArchivedAlert._meta.get_field("topic").max_length


class Outcome(enum.StrEnum):
    """What became of one message."""

    HANDLED = "handled"
    ARCHIVED = "archived"
    DUPLICATE = "duplicate"
    QUARANTINED = "quarantined"
    TEST = "test"
    #: the handler ran and chose to do nothing (its reason in the result); archived as handled
    IGNORED = "ignored"


@dataclass
class Envelope:
    """One message on its way into the archive.

    Build it with :meth:`from_kafka` (a confluent-kafka message) or :meth:`from_file`.
    """

    topic: str
    payload: bytes
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    partition: int | None = None
    offset: int | None = None
    timestamp_ms: int | None = None
    kafka_key: bytes | str | None = None
    raw: Any = None  # the confluent-kafka message, for offset commits
    origin: str = "kafka"
    #: a hop test message (``_test`` header) that the stream archives without running its handler
    test: bool = False
    _decoded: Any = field(default=None, repr=False, compare=False)

    @property
    def format(self) -> str:
        """The payload's format (hop's ``_format`` header, else sniffed)."""
        return detect_format(self.headers, self.payload)[:16]

    @property
    def oversized(self) -> bool:
        """Whether the payload is larger than ``TOM_MMA_BROKER['MAX_MESSAGE_BYTES']`` (it is then never decoded)."""
        return len(self.payload) > broker_settings.MAX_MESSAGE_BYTES

    def decoded(self) -> Any:
        """The decoded payload (decoded once; a :class:`DecodeError` is remembered and raised again).

        An oversized payload (:attr:`oversized`) is not decoded at all: :class:`OversizedMessage`.
        """
        if self._decoded is None:
            if self.oversized:
                limit = broker_settings.MAX_MESSAGE_BYTES
                self._decoded = OversizedMessage(
                    f"oversized message: {len(self.payload)} bytes, above TOM_MMA_BROKER['MAX_MESSAGE_BYTES'] = "
                    f"{limit}: not decoded; its first {OVERSIZED_KEPT_BYTES} bytes are archived"
                )
            else:
                try:
                    self._decoded = decode(self.format, self.payload)
                except DecodeError as exc:
                    self._decoded = exc
        if isinstance(self._decoded, DecodeError):
            raise self._decoded
        return self._decoded

    def predecode(self) -> None:
        """Decode now (in a prefetch thread), keeping the result or the error for :meth:`decoded`."""
        try:
            self.decoded()
        except DecodeError:
            pass

    @classmethod
    def from_kafka(cls, message: Any) -> Envelope:
        """Wrap a ``confluent_kafka.Message``."""
        ts_type, ts = message.timestamp()
        return cls(
            topic=message.topic(),
            payload=message.value() or b"",
            headers=list(message.headers() or ()),
            partition=message.partition(),
            offset=message.offset(),
            timestamp_ms=ts if ts_type else None,
            kafka_key=message.key(),
            raw=message,
        )

    @classmethod
    def from_file(cls, path: str | Path, topic: str, headers: Sequence[tuple[str, bytes]] = ()) -> Envelope:
        """Wrap an alert file read from disk, as if it came from ``topic``."""
        path = Path(path)
        return cls(topic=topic, payload=path.read_bytes(), headers=list(headers), origin=str(path))

    @classmethod
    def from_archive(cls, alert: ArchivedAlert) -> Envelope:
        """Rebuild the envelope of an archived message (headers as they were received)."""
        return cls(
            topic=alert.topic,
            payload=bytes(alert.payload),
            headers=decode_headers(alert.headers),
            partition=alert.partition,
            offset=alert.offset,
            origin="kafka" if alert.key.startswith(("id:", "kafka:")) else "archive",
        )

    @property
    def message_id(self) -> uuid.UUID | None:
        """Hop's ``_id`` header as a UUID (None when absent or malformed)."""
        return message_id(self.headers)

    @property
    def key(self) -> str:
        """The archive's idempotency key."""
        message_id = self.message_id
        if message_id is not None:
            return f"id:{message_id}"
        if self.origin == "kafka":
            key = f"kafka:{self.topic}/{self.partition}/{self.offset}"
        else:
            key = f"sha256:{self.topic}/{hashlib.sha256(self.payload).hexdigest()}"
        if len(key) > KEY_MAX_LENGTH:
            # a long topic name would overflow the column: name the topic by its digest instead
            scheme, rest = key.split(":", 1)
            topic_digest = hashlib.sha256(self.topic.encode()).hexdigest()[:32]
            key = f"{scheme}:~{topic_digest}{rest[len(self.topic) :]}"
        return key

    def metadata(self) -> Any:
        """A hop ``Metadata`` for handlers (the same shape tom-alertstreams passes)."""
        from hop.io import Metadata

        return Metadata(
            topic=self.topic,
            partition=self.partition if self.partition is not None else -1,
            offset=self.offset if self.offset is not None else -1,
            timestamp=self.timestamp_ms or 0,
            key=self.kafka_key,
            headers=self.headers,
            _raw=self.raw,
        )

    def describe(self) -> str:
        """A short name of the message for logs: alert id and where it came from."""
        where = f"{self.topic}[{self.partition}]@{self.offset}" if self.origin == "kafka" else self.origin
        return f"{self.key} ({where})"


@dataclass(frozen=True)
class IngestResult:
    """The outcome of one message."""

    envelope: Envelope
    outcome: Outcome
    reason: str = ""

    def line(self, label: str | None = None) -> str:
        """One line for a person: the outcome, the message (``label``, default its origin), the reason.

        Examples
        --------
        >>> env = Envelope(topic="t", payload=b"", origin="alerts/a.json")
        >>> IngestResult(env, Outcome.QUARANTINED, "decode: bad JSON").line()
        'quarantined alerts/a.json: decode: bad JSON'
        """
        text = f"{self.outcome.value:<11} {label or self.envelope.origin}"
        return f"{text}: {self.reason}" if self.reason else text


def summarize(counts: Mapping[Outcome, int]) -> str:
    """The closing line of a replay: how many messages, and what became of them.

    Examples
    --------
    >>> summarize({Outcome.HANDLED: 2, Outcome.QUARANTINED: 1})
    '3 messages: 2 handled, 0 archived, 0 duplicate, 1 quarantined'
    """
    # "test" and "ignored" are shown only when some message was one
    rare = (Outcome.TEST, Outcome.IGNORED)
    parts = ", ".join(f"{counts.get(o, 0)} {o.value}" for o in Outcome if o not in rare or counts.get(o))
    return f"{sum(counts.values())} messages: {parts}"


class HandlerMap:
    """Topic -> handler, with tom-alertstreams' rules: exact topic, then regex wildcards, then ``*``.

    A handler of ``None`` means: archive only.
    """

    def __init__(self, handlers: Mapping[str, Handler | None]):
        self._exact = {t: h for t, h in handlers.items() if "*" not in t}
        self._patterns = [(re.compile(t), h) for t, h in handlers.items() if "*" in t and t != "*"]
        self._default = handlers.get("*")
        self._cache: dict[str, Handler | None] = {}

    def topics(self) -> list[str]:
        """The explicit topic names (no wildcards)."""
        return sorted(self._exact)

    def has_wildcards(self) -> bool:
        """Whether a regex or ``*`` entry may match topics not named explicitly."""
        return bool(self._patterns) or self._default is not None

    def matches(self, topic: str) -> bool:
        """Whether a handler entry (possibly ``None``) covers ``topic``."""
        return topic in self._exact or any(p.match(topic) for p, _ in self._patterns) or self._default is not None

    def __call__(self, topic: str) -> Handler | None:
        """The handler of ``topic`` (None: archive only, or no entry covers it)."""
        if topic not in self._cache:
            handler = self._exact.get(topic)
            if handler is None and topic not in self._exact:
                handler = next((h for p, h in self._patterns if p.match(topic)), self._default)
            self._cache[topic] = handler
        return self._cache[topic]


def kafka_time(ms: int | None) -> datetime | None:
    """A Kafka timestamp (ms since the epoch) as a datetime; None when absent or out of range."""
    if not ms or ms < 0:
        return None
    try:
        return datetime.fromtimestamp(ms / 1000, tz=UTC)
    except (ValueError, OverflowError, OSError):  # a producer's clock (or a hostile one) beyond year 9999
        return None


def configured_handlers(topic: str) -> Mapping[str, object]:
    """The handler map that the TOM's ``ALERT_STREAMS`` configures, for the stream that reads ``topic``.

    Returns a mapping suitable for :class:`HandlerMap` (handler paths imported), or an empty one
    when no configured stream reads ``topic`` (then files are archived only).
    """
    for config in getattr(settings, "ALERT_STREAMS", []) or []:
        if not config.get("ACTIVE", True):
            continue
        handlers = config.get("OPTIONS", {}).get("TOPIC_HANDLERS") or {}
        imported = {t: (import_string(p) if p else None) for t, p in handlers.items()}
        if HandlerMap(imported).matches(topic):
            return imported
    return {}
