"""Ingest: archive a batch of messages once, run their topic handlers, quarantine poison.

This is the one code path for a message from Kafka (``streams``) and for a file replayed by
``replayalerts``: both build :class:`Envelope` objects and call :meth:`Ingestor.ingest`.

Guarantees, per batch, in one database transaction:

* idempotent: each message is archived once, keyed on hop's ``_id`` header (else
  topic/partition/offset, or a content digest for files); a message already in the archive is
  a duplicate: nothing is written and no handler runs again;
* a handler runs inside a savepoint; if it raises, its writes are rolled back and it is tried
  again, up to ``MAX_HANDLER_ATTEMPTS`` in all; then the message is quarantined with the
  reason. A payload that cannot be decoded is quarantined at once;
* a handler exception whose class has a truthy ``permanent`` attribute (duck-typed, e.g.
  ``class NoticeError(ValueError): permanent = True``) says that trying again cannot help: the
  message is quarantined at the first attempt;
* a transient database error inside a handler (``OperationalError``: a deadlock, a
  serialization failure, ``database is locked``; ``InterfaceError``: a lost connection) is not
  the message's fault: it is raised again, nothing of the batch is kept, and the stream retries
  the batch under its backoff. The message is never quarantined for it;
* a message the database cannot store (a ``DataError``, content that cannot be written as
  JSON) does not block its batch: the batch is redone one message at a time, and that message
  is archived with its raw bytes, no content, and quarantined (stage ``archive``). Decoded
  content and error texts are cleaned first of what PostgreSQL rejects (NUL characters);
* a handler that returns an object with a non-empty ``ignored`` attribute (duck-typed: the reason, e.g. a
  mock GW event in a TOM that takes none) ran and chose to do nothing: the result says ``ignored`` with
  that reason, so that a person replaying files sees why nothing appeared;
* a message with hop's ``_test`` header, read by a stream that ignores test messages, is
  archived with status ``test`` and its handler is not run;
* the caller commits offsets only after this transaction commits (at-least-once delivery).
"""

from __future__ import annotations

import enum
import hashlib
import logging
import re
import time
import traceback
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.db import DataError, IntegrityError, InterfaceError, OperationalError, connection, transaction
from django.db.models import F
from django.utils import timezone

from tom_mma.hopmessages import decode_headers, encode_headers, message_id

from .conf import broker_settings
from .formats import DecodeError, UnstorableContent, clean_text, decode, detect_format
from .models import ArchivedAlert, QuarantinedAlert, TopicHealth

__all__ = [
    "Envelope",
    "Outcome",
    "IngestResult",
    "Ingestor",
    "summarize",
    "HandlerMap",
    "record_stream_error",
    "is_permanent",
    "TRANSIENT_DB_ERRORS",
]

logger = logging.getLogger(__name__)

Handler = Callable[[Any, Any], Any]

KEY_MAX_LENGTH = ArchivedAlert._meta.get_field("key").max_length
TOPIC_MAX_LENGTH = ArchivedAlert._meta.get_field("topic").max_length

# database errors that say nothing about the message: the batch is retried, never quarantined
TRANSIENT_DB_ERRORS = (OperationalError, InterfaceError)
# a message the database cannot store: archived without content and quarantined, alone
_UNSTORABLE = (DataError, UnstorableContent)


def is_permanent(exc: BaseException) -> bool:
    """Whether ``exc`` says that handling its message again cannot succeed.

    The convention is duck-typed, so that handler code need not import this module: an
    exception class with a truthy ``permanent`` attribute.

    Examples
    --------
    >>> class NoticeError(ValueError):
    ...     permanent = True
    >>> is_permanent(NoticeError("no such field")), is_permanent(ValueError("x"))
    (True, False)
    """
    return bool(getattr(exc, "permanent", False))


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

    def decoded(self) -> Any:
        """The decoded payload (decoded once; a :class:`DecodeError` is remembered and raised again)."""
        if self._decoded is None:
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
        """hop's ``_id`` header as a UUID (None when absent or malformed)."""
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
        return bool(self._patterns) or self._default is not None

    def matches(self, topic: str) -> bool:
        """Whether a handler entry (possibly ``None``) covers ``topic``."""
        return topic in self._exact or any(p.match(topic) for p, _ in self._patterns) or self._default is not None

    def __call__(self, topic: str) -> Handler | None:
        if topic not in self._cache:
            handler = self._exact.get(topic)
            if handler is None and topic not in self._exact:
                handler = next((h for p, h in self._patterns if p.match(topic)), self._default)
            self._cache[topic] = handler
        return self._cache[topic]


def _kafka_time(ms: int | None) -> datetime | None:
    if not ms or ms < 0:
        return None
    try:
        return datetime.fromtimestamp(ms / 1000, tz=UTC)
    except (ValueError, OverflowError, OSError):  # a producer's clock (or a hostile one) beyond year 9999
        return None


# the health counter that counts messages of each archive status
_HEALTH_COUNTS = {
    ArchivedAlert.Status.HANDLED: "messages_handled",
    ArchivedAlert.Status.ARCHIVED: "messages_archived",
    ArchivedAlert.Status.QUARANTINED: "messages_quarantined",
    ArchivedAlert.Status.TEST: "messages_test",
}


def _ignored(returned: Any) -> str:
    """The reason a handler gave for doing nothing (its result's ``ignored`` attribute), or ``""``."""
    reason = getattr(returned, "ignored", "")
    return clean_text(str(reason)) if reason else ""


class _Quarantine(Exception):
    def __init__(self, stage: str, exc: BaseException, attempts: int):
        self.stage = stage
        self.exc = exc
        self.attempts = attempts
        super().__init__(f"{stage}: {type(exc).__name__}: {exc}")


class Ingestor:
    """Archive and handle batches of messages (see the module docstring for the guarantees).

    Parameters
    ----------
    handlers : mapping or HandlerMap
        Topic -> handler ``handler(alert, metadata)``, or ``None`` for archive only.
    max_attempts : int, optional
        Tries per handler before quarantine (default: ``TOM_MMA_BROKER['MAX_HANDLER_ATTEMPTS']``).
    retry_delay : float, optional
        Seconds before the second try, doubled for each further one.
    store_content : bool, optional
        Keep decoded content in the archive (default: ``TOM_MMA_BROKER['STORE_CONTENT']``).
    """

    def __init__(
        self,
        handlers: Mapping[str, Handler | None] | HandlerMap,
        max_attempts: int | None = None,
        retry_delay: float | None = None,
        store_content: bool | None = None,
    ):
        self.handlers = handlers if isinstance(handlers, HandlerMap) else HandlerMap(handlers)
        self.max_attempts = max_attempts or broker_settings.MAX_HANDLER_ATTEMPTS
        self.retry_delay = broker_settings.HANDLER_RETRY_DELAY_S if retry_delay is None else retry_delay
        self.store_content = broker_settings.STORE_CONTENT if store_content is None else store_content
        self._known_topics: set[str] = set()

    # -- the batch --------------------------------------------------------------------------
    def ingest(self, envelopes: Sequence[Envelope]) -> list[IngestResult]:
        """Archive and handle ``envelopes`` in one transaction; return one result per envelope.

        Raises
        ------
        django.db.DatabaseError
            If the database itself fails: nothing of the batch is kept, and the caller must not
            commit the batch's offsets.
        """
        if not envelopes:
            return []
        try:
            with transaction.atomic():
                return self._ingest(envelopes)
        except (IntegrityError, *_UNSTORABLE) as exc:
            # another consumer archived one of these messages between our check and our insert,
            # or one message holds data the database refuses: redo the batch one message at a
            # time, each in its own transaction, so that only that message is set aside
            logger.info("%s in a batch of %d; retrying one by one", type(exc).__name__, len(envelopes))
        results = []
        for envelope in envelopes:
            try:
                with transaction.atomic():
                    results.extend(self._ingest([envelope]))
            except IntegrityError as exc:
                if ArchivedAlert.objects.filter(key=envelope.key).exists():
                    results.append(IngestResult(envelope, Outcome.DUPLICATE))
                else:  # not a key race: a constraint the row breaks (e.g. SQLite's JSON check)
                    results.append(self._archive_unstorable(envelope, exc))
            except _UNSTORABLE as exc:
                results.append(self._archive_unstorable(envelope, exc))
        return results

    def _archive_unstorable(self, envelope: Envelope, exc: Exception) -> IngestResult:
        """Archive a message the database refused: raw bytes, no content, quarantined (stage ``archive``).

        Raises
        ------
        django.db.DatabaseError
            If even this row cannot be written (the database itself is failing).
        """
        now = timezone.now()
        key = envelope.key
        row = self._archive_row(envelope, key, now)
        row.topic = row.topic[:TOPIC_MAX_LENGTH]
        row.status = ArchivedAlert.Status.QUARANTINED
        failure = _Quarantine("archive", exc, 1)
        result = IngestResult(envelope, Outcome.QUARANTINED, clean_text(str(failure)))
        with transaction.atomic():
            row.save(force_insert=True)
            self._quarantine_row(row, failure).save(force_insert=True)
            self._update_health([result], now)
        logger.warning("archived %s without content and quarantined it: %s", envelope.describe(), result.reason)
        return result

    def _ingest(self, envelopes: Sequence[Envelope]) -> list[IngestResult]:
        now = timezone.now()
        keys = [e.key for e in envelopes]
        seen = set(ArchivedAlert.objects.filter(key__in=keys).values_list("key", flat=True))
        results: list[IngestResult | None] = [None] * len(envelopes)
        fresh: list[tuple[int, Envelope, ArchivedAlert]] = []
        for i, envelope in enumerate(envelopes):
            key = keys[i]
            if key in seen:
                results[i] = IngestResult(envelope, Outcome.DUPLICATE)
                logger.debug("duplicate %s", envelope.describe())
                continue
            seen.add(key)
            fresh.append((i, envelope, self._archive_row(envelope, key, now)))

        # decode before the insert, so that the content goes in with the row
        decoded: dict[int, Any] = {}
        failures: dict[int, _Quarantine] = {}
        for i, envelope, row in fresh:
            try:
                item = envelope.decoded()
            except DecodeError as exc:
                if not envelope.test:  # a test message that does not decode is still only a test
                    failures[i] = _Quarantine("decode", exc, 1)
                continue
            decoded[i] = item
            if self.store_content and item.content is not None:
                row.content = item.content
        self._insert([row for _, _, row in fresh])

        quarantined: list[QuarantinedAlert] = []
        for i, envelope, row in fresh:
            if envelope.test:
                results[i] = IngestResult(envelope, Outcome.TEST)
                logger.info("test message %s archived; its handler was not run", envelope.describe())
                continue
            handler = self.handlers(envelope.topic)
            ignored = ""
            if i not in failures and handler is not None:
                try:
                    ignored = _ignored(self._run_handler(handler, decoded[i].model, envelope))
                except _Quarantine as exc:
                    failures[i] = exc
            if i in failures:
                failure = failures[i]
                row.status = ArchivedAlert.Status.QUARANTINED
                if row.pk is None:
                    self._fetch_pks([row])
                quarantined.append(self._quarantine_row(row, failure))
                results[i] = IngestResult(envelope, Outcome.QUARANTINED, clean_text(str(failure)))
                logger.warning("quarantined %s after %d attempt(s): %s", envelope.describe(), failure.attempts, failure)
            elif ignored:
                results[i] = IngestResult(envelope, Outcome.IGNORED, ignored)
            else:
                outcome = Outcome.HANDLED if handler is not None else Outcome.ARCHIVED
                results[i] = IngestResult(envelope, outcome)
        if quarantined:
            ArchivedAlert.objects.filter(pk__in=[q.alert_id for q in quarantined]).update(
                status=ArchivedAlert.Status.QUARANTINED
            )
            QuarantinedAlert.objects.bulk_create(quarantined)
        final = [r for r in results if r is not None]
        self._update_health(final, now)
        return final

    # -- pieces -----------------------------------------------------------------------------
    def _archive_row(self, envelope: Envelope, key: str, now: datetime) -> ArchivedAlert:
        handler = self.handlers(envelope.topic)
        if envelope.test:
            status = ArchivedAlert.Status.TEST
        else:
            status = ArchivedAlert.Status.HANDLED if handler is not None else ArchivedAlert.Status.ARCHIVED
        return ArchivedAlert(
            key=key,
            message_id=envelope.message_id,
            topic=envelope.topic,
            partition=envelope.partition,
            offset=envelope.offset,
            kafka_timestamp=_kafka_time(envelope.timestamp_ms),
            received=now,
            headers=encode_headers(envelope.headers, clean=clean_text),
            format=envelope.format,
            payload=envelope.payload,
            size=len(envelope.payload),
            status=status,
        )

    def _insert(self, rows: list[ArchivedAlert]) -> None:
        if not rows:
            return
        if connection.vendor == "postgresql":
            _copy_rows(rows)
            return
        ArchivedAlert.objects.bulk_create(rows, batch_size=200)
        if rows[0].pk is None:  # backends without RETURNING do not set pks
            self._fetch_pks(rows)

    @staticmethod
    def _fetch_pks(rows: list[ArchivedAlert]) -> None:
        ids = dict(ArchivedAlert.objects.filter(key__in=[r.key for r in rows]).values_list("key", "pk"))
        for row in rows:
            row.pk = ids[row.key]

    def _run_handler(self, handler: Handler, model: Any, envelope: Envelope) -> Any:
        """Run ``handler`` under the retry rules; return what it returned."""
        metadata = envelope.metadata()
        delay = self.retry_delay
        for attempt in range(1, self.max_attempts + 1):
            try:
                with transaction.atomic():
                    return handler(model, metadata)
            except TRANSIENT_DB_ERRORS:
                # the database's failure, not the message's: the whole batch is retried under the
                # stream's backoff (the savepoint is gone; the batch transaction must roll back)
                logger.warning("transient database error in the handler of %s: batch retried", envelope.describe())
                raise
            except Exception as exc:  # a handler's failure is the message's, not the stream's
                if attempt >= self.max_attempts or is_permanent(exc):
                    raise _Quarantine("handle", exc, attempt) from exc
                logger.info(
                    "handler for %s failed (attempt %d of %d): %s: %s",
                    envelope.describe(),
                    attempt,
                    self.max_attempts,
                    type(exc).__name__,
                    exc,
                )
                if delay:
                    time.sleep(delay)
                    delay *= 2

    # -- an archived message again --------------------------------------------------------------
    def rehandle(self, alert_pk: int, statuses: Collection[str] | None = None) -> IngestResult | None:
        """Run one archived message through its topic's handler again, under the rules of :meth:`ingest`.

        The quarantine's re-handling, ``reprocessalerts`` and the stream share these rules: a handler
        is tried up to ``max_attempts`` times, a ``permanent`` error quarantines at once, a transient
        database error is raised (nothing is kept, nothing is counted against the message). The
        message's status, its quarantine record (the first reason kept beside the latest) and its
        topic's health counts follow the outcome, in one transaction. Handlers are idempotent, so
        running a handled message again makes nothing twice.

        Parameters
        ----------
        alert_pk : int
            Primary key of the :class:`~tom_mma_broker.models.ArchivedAlert`.
        statuses : collection of str, optional
            Run the message only if its status is one of these (default: any but ``test``).

        Returns
        -------
        IngestResult or None
            The outcome, or None when the message is gone or its status is not one of ``statuses``.

        Raises
        ------
        django.db.OperationalError, django.db.InterfaceError
            A transient database error: try again later.
        """
        with transaction.atomic():
            alert = ArchivedAlert.objects.select_for_update().filter(pk=alert_pk).first()
            allowed = statuses if statuses is not None else set(ArchivedAlert.Status) - {ArchivedAlert.Status.TEST}
            if alert is None or alert.status not in allowed:
                return None
            envelope = Envelope.from_archive(alert)
            handler = self.handlers(alert.topic)
            failure: _Quarantine | None = None
            ignored = ""
            try:
                decoded = envelope.decoded()
            except DecodeError as exc:
                failure = _Quarantine("decode", exc, 1)
            if failure is None and handler is not None:
                try:
                    ignored = _ignored(self._run_handler(handler, decoded.model, envelope))
                except _Quarantine as exc:
                    failure = exc
            old_status, now = alert.status, timezone.now()
            if failure is None:
                alert.status = ArchivedAlert.Status.HANDLED if handler is not None else ArchivedAlert.Status.ARCHIVED
                if alert.content is None and self.store_content and decoded.content is not None:
                    alert.content = decoded.content
                QuarantinedAlert.objects.filter(alert=alert, released__isnull=True).update(released=now)
                result = (
                    IngestResult(envelope, Outcome.IGNORED, ignored)
                    if ignored
                    else IngestResult(envelope, Outcome(alert.status))
                )
            else:
                alert.status = ArchivedAlert.Status.QUARANTINED
                self._requarantine(alert, failure)
                result = IngestResult(envelope, Outcome.QUARANTINED, clean_text(str(failure)))
                logger.warning("re-handling %s failed: %s", envelope.describe(), result.reason)
            alert.save(update_fields=["status", "content"])
            self._move_health(alert.topic, old_status, alert.status, result, now)
            return result

    def _requarantine(self, alert: ArchivedAlert, failure: _Quarantine) -> None:
        """Record a failure of a message that may already be quarantined: the first reason stays."""
        fresh = self._quarantine_row(alert, failure)
        existing = QuarantinedAlert.objects.filter(alert=alert).first()
        if existing is None:
            fresh.save(force_insert=True)
            return
        existing.first_reason = existing.first_reason or existing.reason
        for name in ("stage", "reason", "error_type", "traceback"):
            setattr(existing, name, getattr(fresh, name))
        existing.attempts += failure.attempts
        existing.released = None
        existing.save()

    def _move_health(self, topic: str, old: str, new: str, result: IngestResult, now: datetime) -> None:
        """Move one message's count from its old status to its new one in its topic's health."""
        update: dict[str, Any] = {"updated": now}
        if old != new:
            update[_HEALTH_COUNTS[old]] = F(_HEALTH_COUNTS[old]) - 1
            update[_HEALTH_COUNTS[new]] = F(_HEALTH_COUNTS[new]) + 1
        if result.outcome is Outcome.QUARANTINED:
            update.update(last_error=clean_text(f"{result.envelope.key}: {result.reason}"[:2000]), last_error_at=now)
        TopicHealth.objects.get_or_create(topic=topic)
        TopicHealth.objects.filter(topic=topic).update(**update)

    @staticmethod
    def _quarantine_row(row: ArchivedAlert, failure: _Quarantine) -> QuarantinedAlert:
        exc = failure.exc
        reason = clean_text(f"{type(exc).__name__}: {exc}"[:10000])
        return QuarantinedAlert(
            alert_id=row.pk,
            stage=failure.stage,
            reason=reason,
            first_reason=reason,
            error_type=clean_text(f"{type(exc).__module__}.{type(exc).__qualname__}"[:200]),
            traceback=clean_text("".join(traceback.format_exception(exc))[-20000:]),
            attempts=failure.attempts,
        )

    def _update_health(self, results: list[IngestResult], now: datetime) -> None:
        counts: dict[str, Counter] = defaultdict(Counter)
        errors: dict[str, str] = {}
        for result in results:
            topic = result.envelope.topic[:TOPIC_MAX_LENGTH]  # as archived (see _archive_unstorable)
            counts[topic][result.outcome] += 1
            if result.outcome is Outcome.QUARANTINED:
                errors[topic] = clean_text(f"{result.envelope.key}: {result.reason}"[:2000])
        for topic, c in counts.items():
            if topic not in self._known_topics:
                TopicHealth.objects.get_or_create(topic=topic)
                self._known_topics.add(topic)
            update: dict[str, Any] = {
                "last_message_at": now,
                "messages_handled": F("messages_handled") + c[Outcome.HANDLED] + c[Outcome.IGNORED],
                "messages_archived": F("messages_archived") + c[Outcome.ARCHIVED],
                "messages_quarantined": F("messages_quarantined") + c[Outcome.QUARANTINED],
                "duplicates": F("duplicates") + c[Outcome.DUPLICATE],
                "messages_test": F("messages_test") + c[Outcome.TEST],
                "updated": now,
            }
            if topic in errors:
                update.update(last_error=errors[topic], last_error_at=now)
            TopicHealth.objects.filter(topic=topic).update(**update)


def record_stream_error(topics: Iterable[str], error: str) -> None:
    """Note a stream-level error (a lost broker, a failed open) in the health of ``topics``.

    Never raises: the database may be what is failing.
    """
    now = timezone.now()
    try:
        for topic in topics:
            TopicHealth.objects.update_or_create(
                topic=topic, defaults={"last_error": clean_text(error[:2000]), "last_error_at": now}
            )
    except Exception:  # noqa: BLE001 - the health record is best effort; the caller logs the error
        logger.debug("could not record stream error in topic health", exc_info=True)


_COPY_COLUMNS = (
    ("key", "text"), ("message_id", "uuid"), ("topic", "text"), ("partition", "int4"), ("offset", "int8"),
    ("kafka_timestamp", "timestamptz"), ("received", "timestamptz"), ("headers", "jsonb"), ("format", "text"),
    ("payload", "bytea"), ("size", "int4"), ("content", "jsonb"), ("status", "text"),
)  # fmt: skip


def _copy_rows(rows: list[ArchivedAlert]) -> None:
    """Insert archive rows with PostgreSQL's binary COPY (several times cheaper than INSERT for
    64 KB payloads: no SQL to build, no escaping, no RETURNING)."""
    from psycopg.types.json import Jsonb

    from .formats import ArchiveJSONEncoder

    dumps = ArchiveJSONEncoder().encode
    table = ArchivedAlert._meta.db_table
    columns = ", ".join(f'"{name}"' for name, _ in _COPY_COLUMNS)
    # the raw psycopg cursor raises psycopg's errors: wrap them into Django's (IntegrityError for a key
    # race, DataError for a value PostgreSQL refuses), which ingest() handles
    with connection.cursor() as cursor, connection.wrap_database_errors:
        raw = cursor.cursor  # the psycopg cursor under Django's wrapper
        with raw.copy(f'COPY "{table}" ({columns}) FROM STDIN (FORMAT BINARY)') as copy:
            copy.set_types([kind for _, kind in _COPY_COLUMNS])
            for r in rows:
                copy.write_row((
                    r.key, r.message_id, r.topic, r.partition, r.offset, r.kafka_timestamp, r.received,
                    Jsonb(r.headers, dumps=dumps), r.format, r.payload, r.size,
                    None if r.content is None else Jsonb(r.content, dumps=dumps), r.status,
                ))  # fmt: skip
