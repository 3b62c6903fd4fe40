"""Ingest: archive a batch of messages once, run their topic handlers, quarantine poison.

This is the one code path for a message from Kafka (``streams``) and for a file replayed by
``replayalerts``: both build :class:`Envelope` objects and call :meth:`Ingestor.ingest`.

Guarantees, per batch, in one database transaction:

* idempotent: each message is archived once, keyed on hop's ``_id`` header (else topic/partition/offset, or a
  content digest for files); a message already in the archive is a duplicate: nothing is written and no handler runs
  again;
* a handler runs inside a savepoint; if it raises, its writes are rolled back and it is tried again, up to
  ``MAX_HANDLER_ATTEMPTS`` in all; then the message is quarantined with the reason. An exception whose class has a
  truthy ``permanent`` attribute (duck-typed, e.g. ``class NoticeError(ValueError): permanent = True``) says that
  trying again cannot help: the message is quarantined at the first attempt. A payload that cannot be decoded is
  quarantined at once;
* a payload larger than ``MAX_MESSAGE_BYTES`` is not decoded: it is archived with its first 4 KiB only and its true
  size, and quarantined at once (stage ``size``); compressed parts that inflate beyond
  ``TOM_MMA['MAX_INFLATED_BYTES']`` are refused by the decoders and parsers (:mod:`tom_mma.inflate`);
* a transient database error inside a handler (``OperationalError``: a deadlock, a serialization failure, ``database
  is locked``; ``InterfaceError``: a lost connection) is not the message's fault: it is raised again, nothing of the
  batch is kept, and the stream retries the batch under its backoff. The message is never quarantined for it;
* a message the database cannot store (a ``DataError``, content that cannot be written as JSON) does not block its
  batch: the batch is redone one message at a time, and that message is archived with its raw bytes, no content, and
  quarantined (stage ``archive``). Decoded content and error texts are cleaned first of what PostgreSQL rejects (NUL
  characters);
* a handler that returns an object with a non-empty ``ignored`` attribute (duck-typed: the reason, e.g. a mock GW
  event in a TOM that takes none) ran and chose to do nothing: the result says ``ignored`` with that reason, so that
  a person replaying files sees why nothing appeared;
* a message with hop's ``_test`` header, read by a stream that ignores test messages, is archived with status
  ``test`` and its handler is not run;
* a handler with a callable ``batch`` attribute (duck-typed) takes each run of consecutive messages it handles at
  once, without a savepoint, and writes what it kept for the run (the SNEWS decider's state, the points of a
  photometry run) at the end of the call: ``handler.batch([(alert, metadata), ...])`` returns one item per message,
  what the handler returns for it or the exception that message raised (having written nothing for it). A permanent
  exception quarantines its message at once, another has the message handled alone under the retry rules. If the
  call itself raises, the batch is rolled back and redone one message at a time, each handler called alone (a
  transient database error retries the batch, as above);
* the caller commits offsets only after this transaction commits (at-least-once delivery).
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from itertools import groupby
from operator import itemgetter
from typing import Any

from django.db import DataError, IntegrityError, InterfaceError, OperationalError, connection, transaction
from django.utils import timezone

from tom_mma.hopmessages import encode_headers

from .conf import broker_settings
from .envelope import (
    KEY_MAX_LENGTH,
    OVERSIZED_KEPT_BYTES,
    TOPIC_MAX_LENGTH,
    Envelope,
    Handler,
    HandlerMap,
    IngestResult,
    Outcome,
    OversizedMessage,
    kafka_time,
    summarize,
)
from .formats import DecodeError, UnstorableContent, clean_text
from .health import count_batch, move_count, record_stream_error
from .models import ArchivedAlert, QuarantinedAlert
from .pgcopy import copy_rows

__all__ = ["Envelope", "Outcome", "IngestResult", "Ingestor", "summarize", "HandlerMap", "record_stream_error",
           "is_permanent", "TRANSIENT_DB_ERRORS", "KEY_MAX_LENGTH", "TOPIC_MAX_LENGTH"]  # fmt: skip

logger = logging.getLogger(__name__)


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


def _ignored(returned: Any) -> str:
    """The reason a handler gave for doing nothing (its result's ``ignored`` attribute), or ``""``."""
    reason = getattr(returned, "ignored", "")
    return clean_text(str(reason)) if reason else ""


class _BatchFailed(Exception):
    """A batch handler's call raised: the batch's transaction is rolled back and redone one message at a time."""


class _Quarantine(Exception):
    def __init__(self, stage: str, exc: BaseException, attempts: int):
        self.stage = stage
        self.exc = exc
        self.attempts = attempts
        super().__init__(f"{stage}: {type(exc).__name__}: {exc}")

    def row(self, alert: ArchivedAlert) -> QuarantinedAlert:
        """The quarantine record of ``alert`` for this failure (texts cleaned and cut to their columns)."""
        exc = self.exc
        reason = clean_text(f"{type(exc).__name__}: {exc}"[:10000])
        return QuarantinedAlert(
            alert_id=alert.pk,
            stage=self.stage,
            reason=reason,
            first_reason=reason,
            error_type=clean_text(f"{type(exc).__module__}.{type(exc).__qualname__}"[:200]),
            traceback=clean_text("".join(traceback.format_exception(exc))[-20000:]),
            attempts=self.attempts,
        )


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
                return self._ingest(envelopes, batched=True)
        except _BatchFailed as exc:
            logger.warning("%s; the batch of %d redone one by one", exc, len(envelopes), exc_info=exc.__cause__)
        except (IntegrityError, *_UNSTORABLE) as exc:
            # another consumer archived one of these messages between our check and our insert,
            # or one message holds data the database refuses: redo the batch one message at a
            # time, each in its own transaction, so that only that message is set aside
            logger.info("%s in a batch of %d; retrying one by one", type(exc).__name__, len(envelopes))
        results = []
        for envelope in envelopes:
            try:
                with transaction.atomic():
                    results.extend(self._ingest([envelope], batched=False))
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
            failure.row(row).save(force_insert=True)
            count_batch([result], now, self._known_topics)
        logger.warning("archived %s without content and quarantined it: %s", envelope.describe(), result.reason)
        return result

    def _ingest(self, envelopes: Sequence[Envelope], batched: bool) -> list[IngestResult]:
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
            except OversizedMessage as exc:  # even a test message: its bytes are not kept whole
                failures[i] = _Quarantine("size", exc, 1)
                continue
            except DecodeError as exc:
                if not envelope.test:  # a test message that does not decode is still only a test
                    failures[i] = _Quarantine("decode", exc, 1)
                continue
            decoded[i] = item
            if self.store_content and item.content is not None:
                row.content = item.content
        self._insert([row for _, _, row in fresh])

        # the handlers, in the messages' order; a run of messages whose handler takes batches goes to it at once
        calls = [
            (i, envelope, handler)
            for i, envelope, _row in fresh
            if not envelope.test and i not in failures and (handler := self.handlers(envelope.topic)) is not None
        ]
        returned: dict[int, Any] = {}
        for handler, run in groupby(calls, key=itemgetter(2)):
            items = [(i, envelope, decoded[i].model) for i, envelope, _ in run]
            for i, out in self._run_handlers(handler, items, batched):
                if isinstance(out, _Quarantine):
                    failures[i] = out
                else:
                    returned[i] = out

        quarantined: list[QuarantinedAlert] = []
        for i, envelope, row in fresh:
            if envelope.test and i not in failures:
                results[i] = IngestResult(envelope, Outcome.TEST)
                logger.info("test message %s archived; its handler was not run", envelope.describe())
                continue
            handler = self.handlers(envelope.topic)
            ignored = _ignored(returned[i]) if i in returned else ""
            if i in failures:
                failure = failures[i]
                row.status = ArchivedAlert.Status.QUARANTINED
                if row.pk is None:
                    self._fetch_pks([row])
                quarantined.append(failure.row(row))
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
        count_batch(final, now, self._known_topics)
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
            kafka_timestamp=kafka_time(envelope.timestamp_ms),
            received=now,
            headers=encode_headers(envelope.headers, clean=clean_text),
            format=envelope.format,
            # an oversized message is kept as its head only (its size says how big it was)
            payload=envelope.payload[:OVERSIZED_KEPT_BYTES] if envelope.oversized else envelope.payload,
            size=len(envelope.payload),
            status=status,
        )

    def _insert(self, rows: list[ArchivedAlert]) -> None:
        if not rows:
            return
        if connection.vendor == "postgresql":
            copy_rows(rows)
            return
        ArchivedAlert.objects.bulk_create(rows, batch_size=200)
        if rows[0].pk is None:  # backends without RETURNING do not set pks
            self._fetch_pks(rows)

    @staticmethod
    def _fetch_pks(rows: list[ArchivedAlert]) -> None:
        ids = dict(ArchivedAlert.objects.filter(key__in=[r.key for r in rows]).values_list("key", "pk"))
        for row in rows:
            row.pk = ids[row.key]

    def _run_handlers(
        self, handler: Handler, items: list[tuple[int, Envelope, Any]], batched: bool
    ) -> list[tuple[int, Any]]:
        """Run ``handler`` on consecutive messages: at once when it takes batches (and ``batched``), else alone.

        Returns what it returned for each message, or the message's :class:`_Quarantine`.

        Raises
        ------
        _BatchFailed
            If the batch call raised: it ran without a savepoint, so the batch's transaction must roll back.
        """
        batch = getattr(handler, "batch", None) if batched else None
        if not callable(batch):
            return [(i, self._run_alone(handler, model, envelope)) for i, envelope, model in items]
        try:
            outs = list(batch([(model, envelope.metadata()) for _, envelope, model in items]))
        except TRANSIENT_DB_ERRORS:
            logger.warning("transient database error in the batch handler of %d messages: batch retried", len(items))
            raise
        except Exception as exc:  # the batch is redone one message at a time, under the usual rules
            raise _BatchFailed(
                f"the batch handler failed for {len(items)} messages ({items[0][1].describe()} ...)"
            ) from exc
        if len(outs) != len(items):
            raise _BatchFailed(f"a batch handler returned {len(outs)} results for {len(items)} messages")
        done: list[tuple[int, Any]] = []
        for (i, envelope, model), out in zip(items, outs, strict=True):
            if not isinstance(out, BaseException):
                done.append((i, out))
            elif is_permanent(out):
                done.append((i, _Quarantine("handle", out, 1)))
            else:  # it failed in the batch in a way a retry may mend: alone, with retries
                done.append((i, self._run_alone(handler, model, envelope)))
        return done

    def _run_alone(self, handler: Handler, model: Any, envelope: Envelope) -> Any:
        """What :meth:`_run_handler` returns, or the :class:`_Quarantine` it raises."""
        try:
            return self._run_handler(handler, model, envelope)
        except _Quarantine as exc:
            return exc

    def _run_handler(self, handler: Handler, model: Any, envelope: Envelope) -> Any:
        """Run ``handler`` under the retry rules, in a savepoint; return what it returned."""
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
                if len(envelope.payload) < alert.size:  # archived oversized: only its head was kept
                    raise OversizedMessage(
                        f"oversized message: {alert.size} bytes, of which only the first {len(envelope.payload)} "
                        "were archived: it cannot be handled again"
                    )
                decoded = envelope.decoded()
            except OversizedMessage as exc:
                failure = _Quarantine("size", exc, 1)
            except DecodeError as exc:
                failure = _Quarantine("decode", exc, 1)
            if failure is None and handler is not None:
                out = self._run_alone(handler, decoded.model, envelope)
                failure, ignored = (out, "") if isinstance(out, _Quarantine) else (None, _ignored(out))
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
            move_count(alert.topic, old_status, alert.status, result, now)
            return result

    def _requarantine(self, alert: ArchivedAlert, failure: _Quarantine) -> None:
        """Record a failure of a message that may already be quarantined: the first reason stays."""
        fresh = failure.row(alert)
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
