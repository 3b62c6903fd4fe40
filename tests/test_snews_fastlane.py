"""The outbox's fast lane (:mod:`tom_mma_broker.fastlane`): the decider's alerts sent at the commit that queued them.

On the real embedded Kafka broker and the suite's database (both legs). The outbox stays the durable record: a
row of the fast lane is held from the publisher for its lease, recorded as sent when the broker acknowledged it,
and left to the publisher when the process died before sending it.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from django.db import transaction
from django.utils import timezone

from tests.test_snews_stream import observation, snews_topics  # noqa: F401 - the fixture
from tom_mma_broker import fastlane, publishing
from tom_mma_broker.models import OutboxMessage
from tom_mma_broker.snews import service
from tom_mma_broker.snews.messages import parse_message

pytestmark = [pytest.mark.kafka, pytest.mark.django_db(transaction=True)]


def read_with_ids(broker, topic: str, n: int) -> list[tuple[str, str]]:
    """(hop ``_id`` as a uuid, the alert's trigger) of the first ``n`` messages of ``topic``."""
    import json

    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": f"g-{uuid.uuid4().hex[:8]}"})
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    out: list[tuple[str, str]] = []
    try:
        for _ in range(20):
            if len(out) >= n:
                break
            for m in consumer.consume(num_messages=n, timeout=1):
                if m.error() is None:
                    ids = dict(m.headers())
                    out.append((str(uuid.UUID(bytes=ids["_id"])), json.loads(m.value())["trigger_uid"]))
    finally:
        consumer.close()
    return out


def test_alerts_go_at_the_commit_and_are_recorded_sent_without_a_publisher(kafka_broker, snews_topics):  # noqa: F811
    first, second = observation("XENONnT", 45.5), observation("DS-20K", 47.5)
    with transaction.atomic():
        service.decide(parse_message(first))
        decision = service.decide(parse_message(second))
        # held from the publisher until the commit hands it over
        assert publishing.publish_pending() == 0
    assert fastlane.flush(timeout=30)
    (alert,) = decision.alerts
    row = OutboxMessage.objects.get(alert_id=alert.alert_id)
    assert row.sent_at is not None and row.claimed_until is None and row.attempts == 0  # never the publisher's
    assert read_with_ids(kafka_broker, snews_topics["ALERT"], 1) == [(alert.alert_id, second["uuid"])]
    assert not OutboxMessage.objects.filter(sent_at__isnull=True).exists()  # the no-coincidence message too


def test_a_rolled_back_batch_hands_nothing_over(kafka_broker, snews_topics):  # noqa: F811
    with pytest.raises(RuntimeError), transaction.atomic():
        service.decide(parse_message(observation("XENONnT", 45.5)))
        service.decide(parse_message(observation("DS-20K", 47.5)))
        raise RuntimeError("the batch fails after the decider ran")
    kept = observation("KamLAND", 48.0)
    service.decide(parse_message(observation("JUNO", 46.0)))
    decision = service.decide(parse_message(kept))
    assert fastlane.flush(timeout=30)
    # one partition, in order: an alert of the rolled-back batch would have come first
    assert read_with_ids(kafka_broker, snews_topics["ALERT"], 1) == [(decision.alerts[0].alert_id, kept["uuid"])]
    assert OutboxMessage.objects.filter(kind="snews-alert").count() == 1


def test_alerts_a_dead_process_held_go_through_the_publisher_after_the_lease(kafka_broker, snews_topics):  # noqa: F811
    decider = service.decider_from_settings()
    decisions = [decider.process(parse_message(observation(d, s))) for d, s in (("XENONnT", 45.5), ("DS-20K", 47.5))]
    with transaction.atomic():
        # queued held, and never handed over: the process died between its commit and the hand-over
        rows = service._queue(decisions, held=True)
    assert len(rows) == 2  # the first message's no-coincidence message, the second's alert
    assert publishing.publish_pending() == 0  # the lease holds
    OutboxMessage.objects.update(claimed_until=timezone.now() - timedelta(seconds=1))  # the lease ended
    assert publishing.publish_pending() == 2
    (alert,) = decisions[1].alerts
    assert read_with_ids(kafka_broker, snews_topics["ALERT"], 1) == [(alert.alert_id, alert.trigger_uid)]
    # queued again (the messages redelivered after the crash): nothing made, nothing handed over
    with transaction.atomic():
        assert service._queue(decisions, held=True) == []


def test_with_the_fast_lane_off_the_publisher_sends_them(kafka_broker, snews_topics, settings):  # noqa: F811
    settings.TOM_MMA_BROKER = {**settings.TOM_MMA_BROKER, "SNEWS_PUBLISH_AT_COMMIT": False}
    with transaction.atomic():
        service.decide(parse_message(observation("XENONnT", 45.5)))
        decision = service.decide(parse_message(observation("DS-20K", 47.5)))
    assert not OutboxMessage.objects.filter(sent_at__isnull=True).exists()  # the eager publisher, on commit
    assert OutboxMessage.objects.get(alert_id=decision.alerts[0].alert_id).attempts == 1
