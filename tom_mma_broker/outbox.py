"""The outbox: derived alerts to send, queued in the transaction that makes them.

A row of :class:`~tom_mma_broker.models.OutboxMessage` is written with the classification it publishes (or the
retraction that follows an alert citing a retracted event), so that an alert is never sent for a
classification that was rolled back and never lost for one that was kept. After the commit the
``outbox_queued`` signal (:mod:`tom_mma_broker.signals`) has the sender (:mod:`tom_mma_broker.publishing`) run
in a task; the periodic sweep sends what a lost task left (:func:`pending_count`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import uuid
from collections.abc import Iterator

from django.db import transaction

from tom_mma.schemas.derived_alert import DerivedAlert, utc_now_iso

from . import signals
from .models import Classification, OutboxMessage

__all__ = ["announce", "pending_count", "queue_alert", "queue_retractions"]

logger = logging.getLogger(__name__)


def pending_count() -> int:
    """Messages waiting in the outbox."""
    return OutboxMessage.objects.filter(sent_at__isnull=True).count()


def announce() -> None:
    """After the current transaction commits, say that the outbox holds new messages (the sender runs).

    Call it after queueing :class:`~tom_mma_broker.models.OutboxMessage` rows another way (the SNEWS
    decider's alerts, link alerts); :func:`queue_alert` and :func:`queue_retractions` call it themselves.
    """
    transaction.on_commit(lambda: signals.outbox_queued.send_robust(sender=OutboxMessage), robust=True)


def queue_alert(alert: DerivedAlert, topic: str, classification: Classification) -> OutboxMessage:
    """Queue the derived alert that publishes ``classification``, in the caller's transaction."""
    row = OutboxMessage.objects.create(
        alert_id=uuid.UUID(alert.alert_id), topic=topic, classification=classification, payload=alert.to_json()
    )
    announce()
    return row


def _citing(superevent_id: str) -> Iterator[OutboxMessage]:
    """The classification alerts whose payload named ``superevent_id`` as their GW event.

    The event is read from the alert as it was sent, not from its candidate, whose ``gw_event`` may have
    changed since. (The payload is stored as bytes, so the match is made here rather than by a JSON lookup
    in SQL; retractions are rare and the outbox holds one row per classification above the floor.)
    """
    needle = superevent_id.encode()
    for row in OutboxMessage.objects.filter(kind="classification").order_by("id").iterator(chunk_size=500):
        payload = bytes(row.payload)
        if needle in payload and json.loads(payload).get("gw_event") == superevent_id:
            yield row


def queue_retractions(superevent_id: str, reason: str) -> int:
    """Queue a retraction derived alert for every derived alert that cited ``superevent_id``.

    Idempotent: a retraction's alert id derives from the alert it retracts, so calling this again
    queues nothing new. Returns the number of retractions queued now.
    """
    queued = 0
    with transaction.atomic():
        for original in list(_citing(superevent_id)):
            alert_id = uuid.uuid5(uuid.NAMESPACE_URL, f"tom-mma:retraction:{original.alert_id}")
            if OutboxMessage.objects.filter(alert_id=alert_id).exists():
                continue
            alert = dataclasses.replace(
                DerivedAlert.from_json(bytes(original.payload)), alert_id=str(alert_id), kind="retraction",
                created=utc_now_iso(), retracts=str(original.alert_id), reason=reason,
            )  # fmt: skip
            OutboxMessage.objects.create(alert_id=alert_id, topic=original.topic, kind="retraction",
                                         classification=original.classification, payload=alert.to_json())  # fmt: skip
            queued += 1
        if queued:
            announce()
    logger.info("queued %d retraction(s) of derived alerts citing %s", queued, superevent_id)
    return queued
