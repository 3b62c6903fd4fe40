"""The MS181101ab sequence through the real broker (Avro on one topic, JSON on another) and through
``replayalerts``: replayed twice and out of order, the event ends the same."""

from __future__ import annotations

import io
import shutil
import uuid
from pathlib import Path

import pytest
from django.core.management import call_command

from tests.conftest import stream_config
from tom_mma.handlers.lvk import gcn_igwn_gwalert_handler
from tom_mma.models.gw import GWEvent
from tom_mma_broker.embedded import create_topics
from tom_mma_broker.kafka import hop_headers, open_producer
from tom_mma_broker.models import ArchivedAlert
from tom_mma_broker.streams import ReliableHopskotchAlertStream

LVK = Path(__file__).parent / "data" / "lvk"
SEQUENCE = ["earlywarning", "preliminary", "initial", "update", "ext-update", "retraction"]
AVRO_HANDLER = "tom_mma.handlers.lvk.igwn_gwalert_handler"
JSON_HANDLER = "tom_mma.handlers.lvk.gcn_igwn_gwalert_handler"


def event_state() -> dict:
    event = GWEvent.objects.get(superevent_id="MS181101ab")
    return {
        "state": event.state,
        "notices": list(event.notices.values_list("alert_type", flat=True)),  # the model orders ties
        "skymaps": event.skymaps.count(),
    }


def publish(broker, topic: str, names: list[str], fmt: str = "avro") -> None:
    with open_producer(broker.url, topic) as producer:
        for name in names:
            _, headers = hop_headers(fmt)
            producer.write_raw((LVK / f"MS181101ab-{name}.{fmt}").read_bytes(), headers, topic=topic)
        producer.flush()


@pytest.mark.kafka
@pytest.mark.django_db(transaction=True)
def test_sequence_through_the_broker_in_both_transports_out_of_order_and_twice(kafka_broker, settings):
    settings.TOM_MMA = {"ACCEPT_MOCK_EVENTS": True}
    avro_topic, json_topic = f"igwn.gwalert.{uuid.uuid4().hex[:6]}", f"gcn.igwn.{uuid.uuid4().hex[:6]}"
    create_topics(kafka_broker.bootstrap, [avro_topic, json_topic])
    shuffled = ["update", "preliminary", "ext-update", "earlywarning", "initial"]  # no retraction yet
    publish(kafka_broker, avro_topic, shuffled)
    publish(kafka_broker, json_topic, ["preliminary"], fmt="json")
    config = stream_config(avro_topic, handler=AVRO_HANDLER)
    config["OPTIONS"]["TOPIC_HANDLERS"][json_topic] = JSON_HANDLER
    stream = ReliableHopskotchAlertStream(**config["OPTIONS"])
    stats = stream.listen(max_messages=6, idle_timeout=20)
    assert stats["handled"] == 6 and stats["quarantined"] == 0
    live = event_state()
    # in time_created order whatever the arrival order; the JSON preliminary is the Avro one, stored once
    assert live["state"] == "active"
    assert live["notices"] == ["EARLYWARNING", "PRELIMINARY", "INITIAL", "UPDATE", "UPDATE"]

    # the whole sequence again (a replay, new hop ids), then the retraction, then JSON retraction
    publish(kafka_broker, avro_topic, SEQUENCE)
    publish(kafka_broker, json_topic, ["retraction"], fmt="json")
    stats = ReliableHopskotchAlertStream(**config["OPTIONS"]).listen(max_messages=7, idle_timeout=20)
    assert stats["quarantined"] == 0
    final = event_state()
    assert final["state"] == "retracted"
    assert final["notices"] == live["notices"] + ["RETRACTION"]
    assert final["skymaps"] == live["skymaps"]  # same maps: deduplicated by content hash
    assert ArchivedAlert.objects.filter(topic__in=[avro_topic, json_topic]).count() == 6 + 7


@pytest.mark.django_db
def test_sequence_through_replayalerts_twice_and_a_corrupt_map_quarantined(tmp_path, settings):
    settings.TOM_MMA = {"ACCEPT_MOCK_EVENTS": True}
    settings.ALERT_STREAMS = [stream_config("igwn.gwalert", handler=AVRO_HANDLER)]
    folder = tmp_path / "notices"
    folder.mkdir()
    for i, name in enumerate(reversed(SEQUENCE[:-1])):  # reversed: out of order
        shutil.copy(LVK / f"MS181101ab-{name}.avro", folder / f"{i}-{name}.avro")
    truncated = (LVK / "MS181101ab-initial.avro").read_bytes()[:200_000]
    (folder / "9-truncated.avro").write_bytes(truncated)

    out = io.StringIO()
    call_command("replayalerts", str(folder), "--topic", "igwn.gwalert", stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[-1] == "6 messages: 5 handled, 0 archived, 0 duplicate, 1 quarantined"
    assert any(line.startswith("quarantined") and "9-truncated.avro" in line for line in lines)
    first = event_state()
    assert first["notices"] == ["EARLYWARNING", "PRELIMINARY", "INITIAL", "UPDATE", "UPDATE"]

    again = io.StringIO()
    call_command("replayalerts", str(folder), "--topic", "igwn.gwalert", stdout=again)
    assert again.getvalue().splitlines()[-1] == "6 messages: 0 handled, 0 archived, 6 duplicate, 0 quarantined"
    assert event_state() == first


@pytest.mark.kafka
@pytest.mark.django_db
def test_gcn_kafka_messages_as_gcnclassicalertstream_hands_them(kafka_broker, settings):
    """GCNClassicAlertStream calls ``handler(message)`` with the raw ``confluent_kafka.Message`` (no metadata).

    Its ``gcn_kafka.Consumer`` needs GCN's OAuth server, so the same loop is run here with a plain
    ``confluent_kafka.Consumer`` (the class gcn_kafka's subclasses) against the real local broker.
    """
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    settings.TOM_MMA = {"ACCEPT_MOCK_EVENTS": True}
    topic = f"gcn.notices.igwn.gwalert.{uuid.uuid4().hex[:6]}"
    create_topics(kafka_broker.bootstrap, [topic])
    with open_producer(kafka_broker.url, topic) as producer:
        for name in ["preliminary", "retraction"]:  # GCN sends bare JSON, without hop's headers
            producer.write_raw((LVK / f"MS181101ab-{name}.json").read_bytes(), [], topic=topic)
        producer.flush()
    consumer = Consumer({"bootstrap.servers": kafka_broker.bootstrap, "group.id": f"g-{uuid.uuid4().hex[:8]}"})
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    try:
        messages = []
        while len(messages) < 2:
            batch = consumer.consume(num_messages=2, timeout=10)
            assert batch, "no message from the broker"
            messages += [m for m in batch if m.error() is None]
    finally:
        consumer.close()
    assert not hasattr(messages[0], "content")
    results = [gcn_igwn_gwalert_handler(message) for message in messages]  # as the stream calls it
    assert [r.created for r in results] == [True, True]
    assert event_state() == {"state": "retracted", "notices": ["PRELIMINARY", "RETRACTION"], "skymaps": 1}
