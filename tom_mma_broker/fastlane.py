"""The outbox's fast lane: rows sent to Kafka by the thread that committed them, right after the commit.

The outbox publisher (:mod:`tom_mma_broker.publishing`) runs in a task: it claims rows after the commit that
queued them, sends them and waits for the broker. For alerts whose latency matters (the SNEWS decider's:
``SNEWS_PUBLISH_AT_COMMIT``), that claim cost a database round trip and a hand-off between threads or
processes (on SQLite, a wait for the one writer's lock). In the fast lane the outbox row stays the durable
record, and the row is written already held (``claimed_until``, ``SNEWS_PUBLISH_AT_COMMIT_LEASE_S`` ahead), so
no publisher takes it meanwhile; when the transaction commits, the committing thread hands it to this
process's producer (``produce``, which does not wait: librdkafka sends within ``LINGER_MS``). A thread of
this module serves the producer's delivery reports and records them as the publisher does: acknowledged rows
are marked sent; refused ones (or ones the broker did not answer within the producer's message timeout) are
freed with the error and announced, so the publisher sends them again.

What can go wrong, and what then happens:

* the transaction rolls back: nothing was handed over (the hand-over is an ``on_commit`` callback);
* the process dies after the commit, before the broker acknowledged: the rows stay held until their lease
  ends, then the sweep's publisher sends them (:func:`tom_mma_broker.tasks.sweep`);
* it dies after the acknowledgement, before the record: the publisher sends them again after the lease, as
  after a publisher's own lost lease; consumers deduplicate on hop's ``_id`` (the alert id);
* the producer's message timeout is half the lease: a row is never in two producers' hands at once.

:func:`flush` waits until what was handed over is recorded (a stream that stops calls it).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from django.db import connection, transaction
from django.utils import timezone

from .conf import broker_settings
from .kafka import hop_auth, hop_headers, resolve_broker_url
from .models import OutboxMessage

__all__ = ["Row", "enabled", "lease_until", "send_on_commit", "flush", "warm_up", "close"]

logger = logging.getLogger(__name__)

SCHEMA_HEADER = "x-tom-mma-schema"
#: librdkafka's ``linger.ms`` of the fast lane's producer. Measured with bench/snews_decider.py at 1,000 msg/s on
#: PostgreSQL (load ~2): at 0, a produce request per batch (~100/s) loaded the embedded broker, and both the
#: alerts' way to their consumer and the detectors' messages' way to the stream grew long tails (message ->
#: alert p99 273-477 ms); at 5, p99 50-129 ms, the median 28-33 ms; at 10, the same tails, the median 12 ms later
LINGER_MS = 5
#: seconds between two records of the delivery reports (one transaction for all of them)
RECORD_EVERY_S = 0.2
_SCHEMAS = {"snews-alert": b"tom-mma/snews-alert/v1", "snews-nocoinc": b"tom-mma/snews-no-coincidence/v1"}


class Row(NamedTuple):
    """An outbox row handed to the fast lane."""

    alert_id: uuid.UUID
    topic: str
    kind: str
    payload: bytes


def enabled() -> bool:
    """Whether the SNEWS decider's alerts go by the fast lane (publishing on, ``SNEWS_PUBLISH_AT_COMMIT``)."""
    return bool(broker_settings.PUBLISH_ENABLED and broker_settings.SNEWS_PUBLISH_AT_COMMIT)


def lease_until(now: datetime | None = None) -> datetime:
    """The ``claimed_until`` to write on a row the fast lane will send (its lease)."""
    return (now or timezone.now()) + timedelta(seconds=float(broker_settings.SNEWS_PUBLISH_AT_COMMIT_LEASE_S))


class _Sender:
    """One producer of this process and the thread that records its delivery reports."""

    def __init__(self, target: tuple) -> None:
        from adc.kafka import parse_kafka_url
        from adc.producer import ProducerConfig
        from confluent_kafka import Producer

        self.target = target
        lease = float(broker_settings.SNEWS_PUBLISH_AT_COMMIT_LEASE_S)
        _, brokers, _ = parse_kafka_url(f"{target[0]}/x")
        auth = hop_auth(broker_settings.KAFKA_USERNAME, broker_settings.KAFKA_PASSWORD, url=broker_settings.KAFKA_URL)
        timeout = timedelta(seconds=max(lease / 2, 1.0))  # a message not acknowledged by then is refused
        config = ProducerConfig(
            broker_urls=brokers, topic=None, auth=auth or None, use_idempotence=True, produce_timeout=timeout
        )._to_confluent_kafka()
        # the broker's acknowledgement from all in-sync replicas, as the publisher's idempotent producer
        config.update({"linger.ms": LINGER_MS, "acks": "all"})
        self.producer = Producer(config)
        self.lock = threading.Condition()
        self.reports: dict[uuid.UUID, str | None] = {}
        self.in_hand = 0  # handed over, not recorded yet
        self.flushing = 0  # callers of flush() waiting
        self.closed = False
        self.thread = threading.Thread(target=self._serve, name="tom-mma-fastlane", daemon=True)
        self.thread.start()

    def _report(self, alert_id: uuid.UUID, error: Any, message: Any) -> None:
        with self.lock:
            self.reports[alert_id] = None if error is None else str(error)

    def send(self, rows: Iterable[Row]) -> None:
        count = 0
        for row in rows:
            schema = _SCHEMAS.get(row.kind, b"tom-mma/derived-alert/v1")
            _, headers = hop_headers("json", message_id=row.alert_id, extra=[(SCHEMA_HEADER, schema)])
            callback = functools.partial(self._report, row.alert_id)
            count += 1
            while True:
                try:
                    self.producer.produce(row.topic, row.payload, key=str(row.alert_id), headers=headers,
                                          on_delivery=callback)  # fmt: skip
                    break
                except BufferError:  # librdkafka's queue is full: let it drain
                    self.producer.poll(0.01)
                except Exception as exc:  # noqa: BLE001 - this row refused (too large, say): the publisher's again
                    self._report(row.alert_id, f"{type(exc).__name__}: {exc}", None)
                    break
        with self.lock:
            self.in_hand += count
            self.lock.notify_all()

    def _serve(self) -> None:
        """Serve the delivery reports and record them, until closed and nothing is in hand.

        Recorded together every ``RECORD_EVERY_S`` (or when :func:`flush` waits): a transaction per report
        took CPU from the stream's thread, whose batches the alerts wait for.
        """
        last = time.monotonic()
        try:
            while True:
                with self.lock:
                    if self.closed and self.in_hand == 0:
                        return
                    hurry = self.flushing
                self.producer.poll(0.02)  # the delivery callbacks run here
                if not hurry and time.monotonic() - last < RECORD_EVERY_S:
                    continue
                last = time.monotonic()
                with self.lock:
                    reports, self.reports = self.reports, {}
                if not reports:
                    continue
                try:
                    _record(reports)
                except Exception:  # noqa: BLE001 - the rows stay held; after the lease the publisher sends them
                    logger.exception("the fast lane could not record %d delivery report(s)", len(reports))
                    time.sleep(0.5)
                with self.lock:
                    self.in_hand -= len(reports)
                    idle = self.in_hand == 0
                    self.lock.notify_all()
                if idle:  # nothing in flight: no database connection held open between bursts
                    connection.close()
        finally:
            connection.close()  # this thread's database connection

    def flush(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.lock:
            self.flushing += 1
            try:
                while self.in_hand > 0:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    self.lock.wait(min(left, 0.1))
            finally:
                self.flushing -= 1
        return True

    def close(self, timeout: float) -> bool:
        done = self.flush(timeout)
        with self.lock:
            self.closed = True
            # what is still in hand stays held in the outbox: the publisher sends it after the lease
            self.in_hand = 0
        self.thread.join(timeout=5)
        return done


def _record(reports: dict[uuid.UUID, str | None]) -> None:
    """Acknowledged rows sent; refused ones free again (with the error), and the publisher told."""
    acked = [aid for aid, error in reports.items() if error is None]
    refused = {aid: error for aid, error in reports.items() if error is not None}
    now = timezone.now()
    table = connection.ops.quote_name(OutboxMessage._meta.db_table)
    with transaction.atomic():
        if acked and connection.vendor == "postgresql":
            with connection.cursor() as cursor:  # one array parameter: one statement text
                cursor.execute(f"UPDATE {table} SET sent_at = %s, last_error = '', claimed_until = NULL "
                               "WHERE alert_id = ANY(%s) AND sent_at IS NULL", [now, acked])  # fmt: skip
        else:
            for start in range(0, len(acked), 500):
                OutboxMessage.objects.filter(alert_id__in=acked[start : start + 500], sent_at__isnull=True).update(
                    sent_at=now, last_error="", claimed_until=None
                )
        for aid, error in refused.items():
            OutboxMessage.objects.filter(alert_id=aid, sent_at__isnull=True).update(
                last_error=f"fast lane: {error}"[:10000], claimed_until=None
            )
    if refused:
        from . import signals

        logger.warning("fast lane: %d alert(s) refused by the broker, left to the publisher", len(refused))
        signals.outbox_queued.send_robust(sender=OutboxMessage)


_sender: _Sender | None = None
_sender_lock = threading.Lock()


def _get() -> _Sender:
    global _sender
    target = (resolve_broker_url(broker_settings.KAFKA_URL), broker_settings.KAFKA_USERNAME)
    with _sender_lock:
        if _sender is not None and _sender.target == target and not _sender.closed:
            return _sender
        old, _sender = _sender, _Sender(target)
    if old is not None:  # another broker (the embedded one restarted on a new port, say)
        old.close(timeout=1.0)
    return _sender


def warm_up() -> None:
    """Open the fast lane's producer now (it connects and gets its idempotent producer id in the background).

    An idempotent producer's first message waits for that id (~0.5 s against the embedded broker): a stream
    whose first alerts matter opens it when it starts.
    """
    _get().producer.list_topics(timeout=5)


def _hand_over(rows: list[Row]) -> None:
    try:
        _get().send(rows)
    except Exception:  # noqa: BLE001 - no producer (a bad KAFKA_URL, say): the rows go to the publisher
        logger.exception("the fast lane could not take %d alert(s); they are left to the outbox publisher", len(rows))
        from . import signals

        OutboxMessage.objects.filter(alert_id__in=[r.alert_id for r in rows], sent_at__isnull=True).update(
            claimed_until=None
        )
        signals.outbox_queued.send_robust(sender=OutboxMessage)


def send_on_commit(rows: list[Row]) -> None:
    """Hand ``rows`` (queued held, :func:`lease_until`) to the producer when this transaction commits."""
    if rows:
        transaction.on_commit(lambda: _hand_over(rows), robust=True)


def flush(timeout: float = 10.0) -> bool:
    """Wait until the rows handed over are acknowledged or refused, and recorded; False at the timeout."""
    sender = _sender
    return True if sender is None else sender.flush(timeout)


def close(timeout: float = 10.0) -> bool:
    """Flush and close this process's fast-lane producer (a later send opens a new one)."""
    global _sender
    with _sender_lock:
        sender, _sender = _sender, None
    return True if sender is None else sender.close(timeout)
