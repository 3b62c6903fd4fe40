"""The outbox's sender: send queued derived alerts to Kafka, at least once, in order.

What is queued, and when, is :mod:`tom_mma_broker.outbox`'s; this module only sends.

Each message carries hop's headers with ``_id`` = the alert id, and the alert id as Kafka key;
the producer is idempotent. A message is marked sent only when the broker acknowledged it, so a
broker outage (or a stopped broker) delays publication and loses nothing; consumers deduplicate
a rare re-send on ``_id`` (the reliable stream does).
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from datetime import timedelta
from typing import Any, NamedTuple

from django.db import connection, transaction
from django.utils import timezone

from .conf import broker_settings
from .kafka import hop_auth, hop_headers, open_producer, resolve_broker_url
from .models import OutboxMessage

__all__ = ["PublishIncomplete", "close_producers", "publish_pending", "warm_up"]

logger = logging.getLogger(__name__)

SCHEMA_HEADER = "x-tom-mma-schema"
# the schema header of outbox rows by kind (derived alerts for the rest)
_SCHEMAS = {
    "snews-alert": b"tom-mma/snews-alert/v1",
    "snews-nocoinc": b"tom-mma/snews-no-coincidence/v1",
    "link": b"tom-mma/link-alert/v1",
}


class PublishIncomplete(RuntimeError):
    """Some queued messages were not acknowledged by the broker in time; they stay queued."""


class Claimed(NamedTuple):
    """A claimed outbox row: what sending it needs (model instances of a thousand rows cost ~1 ms each)."""

    pk: int
    alert_id: uuid.UUID
    topic: str
    kind: str
    payload: bytes


def _claim(limit: int, lease_s: float) -> list[Claimed]:
    """Take up to ``limit`` queued messages nobody holds, in order, in one statement (one round trip).

    ``UPDATE ... SET attempts = attempts + 1, claimed_until = now + lease WHERE id IN (the first unsent ids
    not held) RETURNING *``: a row is claimed by that update, so of two publishers that read at once only one
    claims each row (PostgreSQL locks the chosen rows and skips those another publisher holds, ``FOR UPDATE
    SKIP LOCKED``; SQLite serialises writers). A claimed row is held until it is acknowledged, refused, or
    its lease (``PUBLISH_LEASE_S``) ends: a publisher that dies holding it delays it by the lease, and the
    message may then go twice, which the consumers' dedup on the alert id absorbs.
    """
    meta = OutboxMessage._meta
    table = connection.ops.quote_name(meta.db_table)
    lock = " FOR UPDATE SKIP LOCKED" if connection.features.has_select_for_update_skip_locked else ""
    now = timezone.now()
    sql = (
        f"UPDATE {table} SET attempts = attempts + 1, claimed_until = %s WHERE id IN "
        f"(SELECT id FROM {table} WHERE sent_at IS NULL AND (claimed_until IS NULL OR claimed_until < %s) "
        f"ORDER BY id LIMIT %s{lock}) RETURNING id, alert_id, topic, kind, payload"
    )
    params = [connection.ops.adapt_datetimefield_value(t) for t in (now + timedelta(seconds=lease_s), now)]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, [*params, int(limit)])
        found = cursor.fetchall()
    rows = [Claimed(pk, aid if isinstance(aid, uuid.UUID) else uuid.UUID(aid), topic, kind, bytes(payload))
            for pk, aid, topic, kind, payload in found]  # fmt: skip
    return sorted(rows, key=lambda row: row.pk)


# One producer per thread of a process, kept between calls: an idempotent producer's first message waits
# for its producer id (0.5 s measured against the embedded broker, every time a producer is opened), which
# was half of a derived alert's way from classification to the TOM. Keyed on the process (a forked worker
# makes its own) and the thread (a failed send in one thread must not purge another's messages); replaced
# when KAFKA_URL or the credentials change, dropped when a send fails so the next call starts afresh.
_producers: dict[tuple[int, int], tuple[tuple, Any]] = {}


def _here() -> tuple[int, int]:
    return (os.getpid(), threading.get_ident())


def _producer(timeout: float, topic: str | None = None) -> Any:
    """The producer of this thread for ``KAFKA_URL`` (opened on first use; ``timeout`` bounds each message).

    Opened for ``topic``, hop builds its Kafka producer at once (else at the first message): any topic, as
    one serves every topic here (hop's automatic offload is off, so all share one size limit).
    """
    target = (resolve_broker_url(broker_settings.KAFKA_URL), broker_settings.KAFKA_USERNAME)
    cached = _producers.get(_here())
    if cached is not None and cached[0] == target:
        return cached[1]
    _discard_producer()  # one for another broker (the embedded one restarted on a new port, say)
    auth = hop_auth(broker_settings.KAFKA_USERNAME, broker_settings.KAFKA_PASSWORD, url=broker_settings.KAFKA_URL)
    producer = open_producer(broker_settings.KAFKA_URL, topic, auth=auth, timeout=timeout)
    _producers[_here()] = (target, producer)
    return producer


def warm_up(timeout: float | None = None) -> None:
    """Open this thread's producer now, before its first message.

    An idempotent producer's first message waits for its producer id (~0.5 s against the embedded broker): a
    worker that publishes latency-critical alerts (the SNEWS decider's) calls this when it starts, so that
    its first alert does not wait. ``timeout`` as :func:`publish_pending`'s (default ``PUBLISH_TIMEOUT_S``).
    """
    timeout = broker_settings.PUBLISH_TIMEOUT_S if timeout is None else timeout
    _producer(max(float(broker_settings.PUBLISH_LEASE_S), timeout), topic=broker_settings.SNEWS_ALERT_TOPIC)


def close_producers() -> None:
    """Close every producer this process keeps (at shutdown, while the broker is still up): all were sent."""
    for key in list(_producers):
        cached = _producers.pop(key, None)
        if cached is None:
            continue
        try:
            cached[1].close()
        except Exception:  # noqa: BLE001 - closing at shutdown is best effort; unsent rows stay in the outbox
            logger.debug("closing a kept producer failed", exc_info=True)


def _discard_producer() -> None:
    """Drop this thread's producer after it failed; what it still holds is not sent.

    The rows of unacknowledged messages stay queued in the outbox, so the next call sends them again.
    """
    cached = _producers.pop(_here(), None)
    if cached is None:
        return
    try:
        # hop's Producer keeps an adc Producer (around a confluent_kafka.Producer) per size limit
        for record in cached[1].producers.values():
            record.producer._producer.purge()  # unsent messages: dropped now, not sent later as duplicates
            record.producer._producer.flush(0)
    except Exception:  # noqa: BLE001 - a producer of a dead broker may fail to purge; it is dropped anyway
        logger.debug("purging a discarded producer failed", exc_info=True)


# Delivery reports of this process's producers, by thread and row: None (acknowledged) or the error. A report
# can come after its call gave up waiting (a stalled broker): the next call of the same thread reads it.
_reports: dict[tuple[int, int], dict[int, str | None]] = {}
# Rows this thread's kept producer still holds: sent, neither acknowledged nor refused yet.
_in_flight: dict[tuple[int, int], set[int]] = {}


def _mark_sent(pks: list[int]) -> None:
    """Record the broker's acknowledgement of these rows (sent now, no error, not held)."""
    if not pks:
        return
    if connection.vendor != "postgresql":
        OutboxMessage.objects.filter(pk__in=pks).update(sent_at=timezone.now(), last_error="", claimed_until=None)
        return
    # one array parameter: the same statement text each time (an IN list of a thousand placeholders was
    # parsed again by psycopg for each call)
    table = connection.ops.quote_name(OutboxMessage._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET sent_at = %s, last_error = '', claimed_until = NULL WHERE id = ANY(%s)",
                       [timezone.now(), list(pks)])  # fmt: skip


def _settle(reports: dict[int, str | None], held: set[int]) -> tuple[list[int], dict[int, str]]:
    """Record the delivery reports received so far: acknowledged rows sent, refused ones free to go again."""
    acked = [pk for pk, error in reports.items() if error is None]
    refused = {pk: error for pk, error in reports.items() if error is not None}
    reports.clear()
    held.difference_update(acked, refused)
    if acked or refused:
        with transaction.atomic():
            _mark_sent(acked)
            for pk, error in refused.items():
                OutboxMessage.objects.filter(pk=pk).update(last_error=error[:10000], claimed_until=None)
    return acked, refused


def publish_pending(limit: int = 500, timeout: float | None = None) -> int:
    """Send up to ``limit`` queued messages; return how many the broker acknowledged during this call.

    None of the steps holds a database transaction while it waits on the broker: claim the rows (a short
    transaction), send them and wait up to ``timeout`` for the broker (no transaction: an outage locks
    nothing, not even SQLite), then record what the broker said (a second short transaction). A message the
    broker has not answered stays with this thread's producer, which keeps retrying it (the idempotent
    producer's retries are deduplicated by the broker) until ``PUBLISH_LEASE_S``; its row is held meanwhile,
    so no publisher sends it again, and a later call records the late answer. Only a producer that failed
    itself is dropped, its messages purged and their rows freed.

    Raises
    ------
    PublishIncomplete
        When some were not acknowledged within ``timeout`` (default ``PUBLISH_TIMEOUT_S``): they stay
        queued (held by this producer until it answers or the lease ends).
    """
    timeout = broker_settings.PUBLISH_TIMEOUT_S if timeout is None else timeout
    lease = max(float(broker_settings.PUBLISH_LEASE_S), timeout)
    here = _here()
    reports = _reports.setdefault(here, {})
    held = _in_flight.setdefault(here, set())
    late_acked, _ = _settle(reports, held)  # answers that came after an earlier call stopped waiting
    rows = _claim(limit, lease)
    if not rows and not held:
        return len(late_acked)

    def on_delivery(pk: int):
        def callback(error, message) -> None:
            reports[pk] = None if error is None else str(error)

        return callback

    sent: list[int] = []
    producer = None
    try:
        producer = _producer(lease)
        for row in rows:
            schema = _SCHEMAS.get(row.kind, b"tom-mma/derived-alert/v1")
            _, headers = hop_headers("json", message_id=row.alert_id, extra=[(SCHEMA_HEADER, schema)])
            producer.write_raw(bytes(row.payload), headers, topic=row.topic, key=str(row.alert_id),
                               delivery_callback=on_delivery(row.pk))  # fmt: skip
            sent.append(row.pk)
            held.add(row.pk)
        producer.flush(timedelta(seconds=timeout))
    except Exception as exc:
        # the producer itself failed: what it holds is purged, and those rows (and the unsent) are free again
        if producer is not None:
            _discard_producer()
        freed = [r.pk for r in rows if r.pk not in reports] + [pk for pk in held if pk not in reports]
        held.clear()
        OutboxMessage.objects.filter(pk__in=freed).update(last_error=f"{type(exc).__name__}: {exc}"[:10000],
                                                          claimed_until=None)  # fmt: skip
        raise
    finally:
        acked, refused = _settle(reports, held)
    waiting = [pk for pk in sent if pk in held]
    if waiting:
        OutboxMessage.objects.filter(pk__in=waiting).update(
            last_error=f"not acknowledged within {timeout:g} s; the producer keeps it (held until its lease ends)"
        )
    logger.info("outbox: %d message(s) published, %d waiting", len(late_acked) + len(acked), len(waiting))
    if waiting or refused:
        logger.warning("outbox: not acknowledged: %d waiting, refused: %s", len(waiting), sorted(set(refused.values())))
        raise PublishIncomplete(f"{len(waiting) + len(refused)} of {len(rows)} messages not acknowledged; will retry")
    return len(late_acked) + len(acked)
