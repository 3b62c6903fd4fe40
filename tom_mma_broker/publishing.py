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
from datetime import timedelta
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from .conf import broker_settings
from .kafka import hop_auth, hop_headers, open_producer, resolve_broker_url
from .models import OutboxMessage

__all__ = ["PublishIncomplete", "close_producers", "publish_pending"]

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


def _claim(limit: int) -> list[OutboxMessage]:
    """Take up to ``limit`` queued messages, in order, in one statement (one round trip).

    ``UPDATE ... SET attempts = attempts + 1 WHERE id IN (the first unsent ids) RETURNING *``: a row is
    claimed by that update, so of two publishers that read at once only one claims each row (PostgreSQL
    locks the chosen rows and skips those another publisher holds, ``FOR UPDATE SKIP LOCKED``; SQLite
    serialises writers). A publisher that starts after the claim may send a row again before it is marked
    sent: at least once, which the idempotent producer and the consumers' dedup on the alert id absorb.
    """
    meta = OutboxMessage._meta
    table = connection.ops.quote_name(meta.db_table)
    lock = " FOR UPDATE SKIP LOCKED" if connection.features.has_select_for_update_skip_locked else ""
    sql = (
        f"UPDATE {table} SET attempts = attempts + 1 WHERE id IN "
        f"(SELECT id FROM {table} WHERE sent_at IS NULL ORDER BY id LIMIT %s{lock}) RETURNING *"
    )
    with transaction.atomic():
        rows = list(OutboxMessage.objects.raw(sql, [int(limit)]))
    return sorted(rows, key=lambda row: row.pk)


# One producer per thread of a process, kept between calls: an idempotent producer's first message waits
# for its producer id (0.5 s measured against the embedded broker, every time a producer is opened), which
# was half of a derived alert's way from classification to the TOM. Keyed on the process (a forked worker
# makes its own) and the thread (a failed send in one thread must not purge another's messages); replaced
# when KAFKA_URL or the credentials change, dropped when a send fails so the next call starts afresh.
_producers: dict[tuple[int, int], tuple[tuple, Any]] = {}


def _here() -> tuple[int, int]:
    return (os.getpid(), threading.get_ident())


def _producer(timeout: float) -> Any:
    """The producer of this thread for ``KAFKA_URL`` (opened on first use; ``timeout`` bounds each message)."""
    target = (resolve_broker_url(broker_settings.KAFKA_URL), broker_settings.KAFKA_USERNAME)
    cached = _producers.get(_here())
    if cached is not None and cached[0] == target:
        return cached[1]
    _discard_producer()  # one for another broker (the embedded one restarted on a new port, say)
    auth = hop_auth(broker_settings.KAFKA_USERNAME, broker_settings.KAFKA_PASSWORD, url=broker_settings.KAFKA_URL)
    producer = open_producer(broker_settings.KAFKA_URL, auth=auth, timeout=timeout)
    _producers[_here()] = (target, producer)
    return producer


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
    """Drop this thread's producer after a failed send; what it still holds is not sent.

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


def publish_pending(limit: int = 500, timeout: float | None = None) -> int:
    """Send up to ``limit`` queued messages; return how many the broker acknowledged.

    Three steps, none of which holds a database transaction while it waits on the broker: claim the rows
    (a short transaction), send and flush them (no transaction: a broker outage of ``timeout`` seconds
    locks nothing, not even SQLite), then mark the acknowledged ones sent and record the errors of the
    others (a second short transaction).

    Raises
    ------
    PublishIncomplete
        When some were not acknowledged within ``timeout`` (default ``PUBLISH_TIMEOUT_S``): they
        stay queued for the next call.
    """
    timeout = broker_settings.PUBLISH_TIMEOUT_S if timeout is None else timeout
    rows = _claim(limit)
    if not rows:
        return 0
    acked: set[int] = set()
    errors: dict[int, str] = {}

    def on_delivery(pk: int):
        def callback(error, message) -> None:
            if error is None:
                acked.add(pk)
            else:
                errors[pk] = str(error)

        return callback

    try:
        producer = _producer(timeout)
        try:
            for row in rows:
                schema = _SCHEMAS.get(row.kind, b"tom-mma/derived-alert/v1")
                _, headers = hop_headers("json", message_id=row.alert_id, extra=[(SCHEMA_HEADER, schema)])
                producer.write_raw(bytes(row.payload), headers, topic=row.topic, key=str(row.alert_id),
                                   delivery_callback=on_delivery(row.pk))  # fmt: skip
            producer.flush(timedelta(seconds=timeout))
        finally:
            if len(acked) < len(rows):
                _discard_producer()
    finally:
        # also when opening or writing raised: record what the broker acknowledged, and why the rest was not
        failed = [r.pk for r in rows if r.pk not in acked]
        with transaction.atomic():
            OutboxMessage.objects.filter(pk__in=acked).update(sent_at=timezone.now(), last_error="")
            for pk in failed:
                OutboxMessage.objects.filter(pk=pk).update(
                    last_error=errors.get(pk, f"not acknowledged within {timeout} s")
                )
    logger.info("outbox: %d derived alert(s) published, %d waiting", len(acked), len(failed))
    if failed:
        logger.warning("outbox: not acknowledged: %s", sorted({errors.get(pk, "timed out") for pk in failed}))
        raise PublishIncomplete(f"{len(failed)} of {len(rows)} derived alerts not acknowledged; will retry")
    return len(acked)
