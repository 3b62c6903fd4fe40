"""Per-topic health of the archive (:class:`~tom_mma_broker.models.TopicHealth`): counts and the last error.

Written by :class:`~tom_mma_broker.ingest.Ingestor` once per batch, and by the stream for errors of the stream
itself (a lost broker); read by the admin and by a person asking whether the TOM is listening.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import DatabaseError
from django.db.models import Count, F
from django.utils import timezone

from .conf import broker_settings
from .envelope import TOPIC_MAX_LENGTH, IngestResult, Outcome
from .formats import clean_text
from .models import ArchivedAlert, QuarantinedAlert, TopicHealth

__all__ = [
    "StreamHealth",
    "TopicStatus",
    "consumer_lag",
    "count_batch",
    "move_count",
    "record_heartbeat",
    "record_stream_error",
    "stream_health",
]

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


def consumer_lag(consumer: Any, timeout: float = 5.0) -> dict[str, int | None]:
    """Per topic, the messages on the broker that the consumer's group has not committed yet.

    ``consumer`` is a ``confluent_kafka.Consumer``; for each assigned partition the lag is the high watermark
    minus the group's committed offset (the position when nothing is committed yet). A topic whose offsets
    the broker did not give is ``None``.

    The embedded broker (Tansu) answers the high watermark wrongly after multi-record batches (it gives the
    last batch's base offset + 1): the figure is exact for messages produced one
    batch each, as the tests produce them, and on a real Kafka.
    """
    from confluent_kafka import KafkaException

    lags: dict[str, int | None] = {}
    try:
        assignment = consumer.assignment()
    except KafkaException:
        logger.debug("no assignment for the lag", exc_info=True)
        return lags
    if not assignment:
        return lags
    try:
        committed = consumer.committed(assignment, timeout=timeout)
        positions = {(tp.topic, tp.partition): tp.offset for tp in consumer.position(assignment)}
    except KafkaException:
        logger.debug("no committed offsets for the lag", exc_info=True)
        return {tp.topic: None for tp in assignment}
    for tp in committed:
        if lags.get(tp.topic, 0) is None:
            continue
        try:
            _low, high = consumer.get_watermark_offsets(tp, timeout=timeout, cached=False)
        except KafkaException:
            lags[tp.topic] = None
            continue
        done = tp.offset if tp.offset >= 0 else positions.get((tp.topic, tp.partition), -1)
        if done < 0 or high < 0:
            lags[tp.topic] = None
            continue
        lags[tp.topic] = lags.get(tp.topic, 0) + max(high - done, 0)
    return lags


def record_heartbeat(topics: Iterable[str], group: str, lags: dict[str, int | None] | None = None) -> None:
    """Note that a stream of consumer group ``group`` is reading ``topics`` now, with their lags.

    Never raises: a stream must not stop because its health note failed (the database may be what fails).
    """
    now = timezone.now()
    lags = lags or {}
    try:
        for topic in topics:
            topic = topic[:TOPIC_MAX_LENGTH]
            TopicHealth.objects.get_or_create(topic=topic)
            update: dict[str, Any] = {"listening_at": now, "consumer_group": group[:255], "updated": now}
            if topic in lags:
                update["consumer_lag"] = lags[topic]
            TopicHealth.objects.filter(topic=topic).update(**update)
    except DatabaseError:
        logger.warning("could not record the stream's heartbeat", exc_info=True)


@dataclass(frozen=True)
class TopicStatus:
    """One topic's health, as the stream health page shows it."""

    topic: str
    last_message_at: datetime | None
    #: messages archived in the last hour, per minute
    rate_per_minute: float
    messages: int
    consumer_group: str
    consumer_lag: int | None
    quarantined: int
    last_error: str
    last_error_at: datetime | None
    listening_at: datetime | None
    listening: bool


@dataclass(frozen=True)
class StreamHealth:
    """Whether the TOM is listening, and each topic's :class:`TopicStatus`."""

    listening: bool
    last_heartbeat_at: datetime | None
    heartbeat_s: float
    topics: list[TopicStatus]

    @property
    def quarantined(self) -> int:
        """Messages in quarantine, all topics."""
        return sum(t.quarantined for t in self.topics)

    @property
    def lag(self) -> int | None:
        """Consumer lag summed over the topics that have one (None when none has)."""
        lags = [t.consumer_lag for t in self.topics if t.consumer_lag is not None]
        return sum(lags) if lags else None

    @property
    def with_errors(self) -> list[TopicStatus]:
        """Topics whose last error is newer than their last message."""
        return [
            t
            for t in self.topics
            if t.last_error_at and (not t.last_message_at or t.last_error_at >= t.last_message_at)
        ]


def stream_health(now: datetime | None = None) -> StreamHealth:
    """Every topic's health: last message, rate over the last hour, lag, quarantine, last error, listening.

    The TOM is listening when a stream noted a heartbeat within three ``HEALTH_HEARTBEAT_S``.
    """
    now = now or timezone.now()
    heartbeat_s = float(broker_settings.HEALTH_HEARTBEAT_S)
    fresh = now - timedelta(seconds=3 * heartbeat_s)
    hour = {
        row["topic"]: row["n"]
        for row in ArchivedAlert.objects.filter(received__gte=now - timedelta(hours=1), received__lte=now)
        .values("topic")
        .annotate(n=Count("id"))
    }
    quarantined = {
        row["alert__topic"]: row["n"]
        for row in QuarantinedAlert.objects.filter(released__isnull=True).values("alert__topic").annotate(n=Count("id"))
    }
    topics = []
    for h in TopicHealth.objects.all():
        topics.append(
            TopicStatus(
                topic=h.topic,
                last_message_at=h.last_message_at,
                rate_per_minute=hour.get(h.topic, 0) / 60.0,
                messages=h.messages_handled + h.messages_archived + h.messages_quarantined + h.messages_test,
                consumer_group=h.consumer_group,
                consumer_lag=h.consumer_lag,
                quarantined=quarantined.get(h.topic, 0),
                last_error=h.last_error,
                last_error_at=h.last_error_at,
                listening_at=h.listening_at,
                listening=h.listening_at is not None and h.listening_at >= fresh,
            )
        )
    beats = [t.listening_at for t in topics if t.listening_at is not None]
    last = max(beats) if beats else None
    return StreamHealth(listening=last is not None and last >= fresh, last_heartbeat_at=last,
                        heartbeat_s=heartbeat_s, topics=topics)  # fmt: skip
