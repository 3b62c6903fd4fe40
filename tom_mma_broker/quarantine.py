"""Quarantined messages: handle them again once the cause is fixed (a handler bug, a missing row)."""

from __future__ import annotations

import logging
import traceback

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from .formats import clean_text, decode
from .ingest import Envelope, HandlerMap
from .models import ArchivedAlert, QuarantinedAlert, TopicHealth

__all__ = ["rehandle"]

logger = logging.getLogger(__name__)


def rehandle(alert_pk: int, handlers: HandlerMap | None = None) -> str:
    """Decode a quarantined message again and run its topic's configured handler.

    Idempotent: a message that is no longer quarantined is left alone. On success the message
    becomes ``handled`` and its quarantine record is marked released; on failure the record
    keeps the new reason and counts the attempt.

    Parameters
    ----------
    alert_pk : int
        Primary key of the :class:`~tom_mma_broker.models.ArchivedAlert`.
    handlers : HandlerMap, optional
        Default: the handlers ``ALERT_STREAMS`` configures for the message's topic.

    Returns
    -------
    str
        ``"handled"``, ``"failed"`` or ``"skipped"``.
    """
    from .replay import configured_handlers

    with transaction.atomic():
        alert = ArchivedAlert.objects.select_for_update().filter(pk=alert_pk).first()
        if alert is None or alert.status != ArchivedAlert.Status.QUARANTINED:
            return "skipped"
        quarantine = QuarantinedAlert.objects.select_for_update().get(alert=alert)
        handler_map = handlers or HandlerMap(configured_handlers(alert.topic))
        handler = handler_map(alert.topic)
        try:
            with transaction.atomic():
                decoded = decode(alert.format, bytes(alert.payload))
                if handler is not None:
                    handler(decoded.model, Envelope.from_archive(alert).metadata())
        except Exception as exc:  # the stream's contract: a handler's failure keeps the message quarantined
            quarantine.reason = clean_text(f"{type(exc).__name__}: {exc}")[:10000]
            quarantine.traceback = clean_text("".join(traceback.format_exception(exc)))[-20000:]
            quarantine.attempts += 1
            quarantine.save(update_fields=["reason", "traceback", "attempts"])
            logger.warning("re-handling %s failed again: %s", alert.key, quarantine.reason)
            return "failed"
        alert.status = ArchivedAlert.Status.HANDLED if handler is not None else ArchivedAlert.Status.ARCHIVED
        if decoded.content is not None:
            alert.content = decoded.content
        alert.save(update_fields=["status", "content"])
        quarantine.released = timezone.now()
        quarantine.save(update_fields=["released"])
        TopicHealth.objects.filter(topic=alert.topic).update(
            messages_handled=F("messages_handled") + 1, messages_quarantined=F("messages_quarantined") - 1
        )
        logger.info("re-handled quarantined %s", alert.key)
        return "handled"
