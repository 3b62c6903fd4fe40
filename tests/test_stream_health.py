"""The stream's heartbeat and consumer lag, against the real embedded broker, checked with known counts.

Each message is published in a batch of its own: the embedded broker (Tansu) answers a wrong high watermark
after multi-record batches, and the lag is measured from the high watermark.
"""

from __future__ import annotations

import pytest

from tests.conftest import publish_json, stream_config
from tests.test_reliability_stream import run_stream
from tom_mma_broker.health import stream_health
from tom_mma_broker.models import TopicHealth

pytestmark = [pytest.mark.kafka, pytest.mark.django_db(transaction=True)]


def test_the_stream_reports_listening_and_its_lag(kafka_broker, topic, settings):
    for seq in range(8):
        publish_json(kafka_broker, topic, [{"seq": seq}])
    settings.TOM_MMA_BROKER = {**settings.TOM_MMA_BROKER, "BATCH_SIZE": 1}
    config = stream_config(topic, handler=None, group="g-lag")

    stats = run_stream(config, max_messages=5)
    assert sum(stats.values()) == 5
    health = TopicHealth.objects.get(topic=topic)
    assert health.consumer_group == "g-lag" and health.listening_at is not None
    assert health.consumer_lag == 3  # 8 published, 5 read and committed
    status = next(t for t in stream_health().topics if t.topic == topic)
    assert status.listening and status.consumer_lag == 3 and status.messages == 5

    stats = run_stream(config, max_messages=3)  # the same group reads the rest
    assert sum(stats.values()) == 3
    assert TopicHealth.objects.get(topic=topic).consumer_lag == 0
