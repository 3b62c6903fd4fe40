"""Per-topic health of the archive (:class:`~tom_mma_broker.models.TopicHealth`): counts and the last error.

Written by :class:`~tom_mma_broker.ingest.Ingestor` once per batch, and by the stream for errors of the stream
itself (a lost broker); read by the admin and by a person asking whether the TOM is listening.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db.models import F
from django.utils import timezone

from .envelope import TOPIC_MAX_LENGTH, IngestResult, Outcome
from .formats import clean_text
from .models import ArchivedAlert, TopicHealth

__all__ = ["count_batch", "move_count", "record_stream_error"]

logger = logging.getLogger(__name__)

# the health counter that counts messages of each archive status
_HEALTH_COUNTS = {
    ArchivedAlert.Status.HANDLED: "messages_handled",
    ArchivedAlert.Status.ARCHIVED: "messages_archived",
    ArchivedAlert.Status.QUARANTINED: "messages_quarantined",
    ArchivedAlert.Status.TEST: "messages_test",
}


def count_batch(results: list[IngestResult], now: datetime, known_topics: set[str]) -> None:
    """Add a batch's outcomes to its topics' counts (``known_topics``: topics whose row exists already)."""
    counts: dict[str, Counter] = defaultdict(Counter)
    errors: dict[str, str] = {}
    for result in results:
        topic = result.envelope.topic[:TOPIC_MAX_LENGTH]  # as archived (see _archive_unstorable)
        counts[topic][result.outcome] += 1
        if result.outcome is Outcome.QUARANTINED:
            errors[topic] = clean_text(f"{result.envelope.key}: {result.reason}"[:2000])
    for topic, c in counts.items():
        if topic not in known_topics:
            TopicHealth.objects.get_or_create(topic=topic)
            known_topics.add(topic)
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


def move_count(topic: str, old: str, new: str, result: IngestResult, now: datetime) -> None:
    """Move one message's count from its old status to its new one in its topic's health."""
    update: dict[str, Any] = {"updated": now}
    if old != new:
        update[_HEALTH_COUNTS[old]] = F(_HEALTH_COUNTS[old]) - 1
        update[_HEALTH_COUNTS[new]] = F(_HEALTH_COUNTS[new]) + 1
    if result.outcome is Outcome.QUARANTINED:
        update.update(last_error=clean_text(f"{result.envelope.key}: {result.reason}"[:2000]), last_error_at=now)
    TopicHealth.objects.get_or_create(topic=topic)
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
