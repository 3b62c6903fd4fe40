"""The SNEWS decider on the reliable stream, end to end on the real embedded Kafka broker.

Observation messages on a topic -> the stream and its handler -> the decider's state in the database and its
alerts in the outbox -> the outbox publisher -> the coincidence and no-coincidence topics.
"""

from __future__ import annotations

import json
import pickle
import uuid

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from tests.conftest import publish_json, stream_config
from tom_mma_broker.embedded import create_topics
from tom_mma_broker.models import OutboxMessage, QuarantinedAlert, SnewsDeciderState
from tom_mma_broker.snews import service
from tom_mma_broker.streams import ReliableHopskotchAlertStream

pytestmark = [pytest.mark.kafka, pytest.mark.django_db(transaction=True)]

HANDLER = "tom_mma_broker.snews.handlers.snews_observation_handler"


def observation(detector: str, seconds: float, **extra) -> dict:
    uid = f"{detector}-{seconds}-{uuid.uuid4().hex[:6]}"
    return {"tier": "CoincidenceTier", "detector_name": detector, "uuid": uid,
            "neutrino_time_utc": f"2030-01-01T12:34:{seconds:09.6f}", "p_val": 0.2, **extra}  # fmt: skip


@pytest.fixture
def snews_topics(kafka_broker, settings):
    """Fresh alert topics on the embedded broker, and a decider without a cached state."""
    suffix = uuid.uuid4().hex[:8]
    names = {key: f"snews.{key.lower()}.{suffix}" for key in ("ALERT", "TEST_ALERT", "NO_COINCIDENCE")}
    create_topics(kafka_broker.bootstrap, list(names.values()))
    settings.TOM_MMA_BROKER = {
        **settings.TOM_MMA_BROKER,
        "SNEWS_ALERT_TOPIC": names["ALERT"],
        "SNEWS_TEST_ALERT_TOPIC": names["TEST_ALERT"],
        "SNEWS_NO_COINCIDENCE_TOPIC": names["NO_COINCIDENCE"],
    }
    service.reset_cache()
    yield names
    service.reset_cache()


def read_topic(broker, topic: str, n: int) -> list[dict]:
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": f"g-{uuid.uuid4().hex[:8]}"})
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    out = []
    try:
        for _ in range(20):
            if len(out) >= n:
                break
            out += [json.loads(m.value()) for m in consumer.consume(num_messages=n, timeout=1) if m.error() is None]
    finally:
        consumer.close()
    return out


def listen(topic: str, n: int, group: str | None = None) -> dict:
    config = stream_config(topic, handler=HANDLER, group=group)
    return ReliableHopskotchAlertStream(**config["OPTIONS"]).listen(max_messages=n, idle_timeout=15)


def test_messages_through_the_broker_make_alerts_on_the_coincidence_topic(kafka_broker, topic, snews_topics):
    pickled = pickle.dumps({"detector_name": "Super-K", "neutrino_time_utc": "2030-01-01T12:34:50"})
    publish_json(
        kafka_broker,
        topic,
        [observation("XENONnT", 45.5), observation("DS-20K", 47.5), observation("JUNO", 46.0, is_test=True)],
        raw=[(pickled, "blob")],
    )
    stats = listen(topic, 4)
    assert stats["handled"] == 3 and stats["quarantined"] == 1
    (quarantined,) = QuarantinedAlert.objects.all()
    assert "Python pickle" in quarantined.reason and quarantined.attempts == 1

    kinds = sorted(OutboxMessage.objects.values_list("kind", flat=True))
    assert kinds == ["snews-alert", "snews-nocoinc", "snews-nocoinc"]
    assert not OutboxMessage.objects.filter(sent_at__isnull=True).exists()  # published on commit (eager Celery)
    (alert,) = read_topic(kafka_broker, snews_topics["ALERT"], 1)
    assert alert["alert_type"] == "COINC_MSG" and alert["detector_names"] == ["XENONnT", "DS-20K"]
    assert alert["sub_list_number"] == 0 and alert["false_alarm_prob"] > 0
    no_coincidence = read_topic(kafka_broker, snews_topics["NO_COINCIDENCE"], 2)
    lanes = sorted((m["detector_name"], m["lane"]) for m in no_coincidence)
    assert lanes == [("JUNO", "test"), ("XENONnT", "observation")]
    assert read_topic(kafka_broker, snews_topics["TEST_ALERT"], 0) == []

    # the TOM side reads the coincidence topic: the alert becomes a neutrino event
    from tom_mma.models import TransientEvent

    config = stream_config(snews_topics["ALERT"], handler="tom_mma.handlers.gcn.snews_alert_handler")
    assert ReliableHopskotchAlertStream(**config["OPTIONS"]).listen(max_messages=1, idle_timeout=15)["handled"] == 1
    neutrino = TransientEvent.objects.get(source="snews")
    assert neutrino.properties["detector_names"] == ["XENONnT", "DS-20K"] and neutrino.messenger == "neutrino"


def test_a_restart_in_the_middle_of_a_coincidence_loses_nothing_and_publishes_nothing_twice(
    kafka_broker, topic, snews_topics
):
    group = f"g-{uuid.uuid4().hex[:8]}"
    publish_json(kafka_broker, topic, [observation("XENONnT", 45.5)])
    assert listen(topic, 1, group=group)["handled"] == 1
    state = SnewsDeciderState.objects.get()
    assert state.messages == 1 and state.state["lanes"]["observation"]["entries"]

    service.reset_cache()  # a new process: its decider comes from the database alone
    publish_json(kafka_broker, topic, [observation("DS-20K", 47.5), observation("KamLAND", 48.0)])
    assert listen(topic, 2, group=group)["handled"] == 2
    alerts = read_topic(kafka_broker, snews_topics["ALERT"], 2)
    assert [(a["alert_type"], a["detector_names"]) for a in alerts] == [
        ("COINC_MSG", ["XENONnT", "DS-20K"]),
        ("COINC_MSG", ["XENONnT", "DS-20K", "KamLAND"]),
    ]

    # the whole topic read again by a new group (a lost offset commit, say): nothing handled, nothing queued
    service.reset_cache()
    before = OutboxMessage.objects.count()
    stats = listen(topic, 3)
    assert stats["duplicate"] == 3 and stats["handled"] == 0
    assert OutboxMessage.objects.count() == before
    assert SnewsDeciderState.objects.get().messages == 3


def test_a_rolled_back_message_leaves_the_decider_as_it_was(kafka_broker, snews_topics):
    from django.db import transaction

    from tom_mma_broker.snews.messages import parse_message

    service.decide(parse_message(observation("XENONnT", 45.5)), arrival_ns=None)
    with pytest.raises(RuntimeError), transaction.atomic():
        service.decide(parse_message(observation("DS-20K", 47.5)))
        raise RuntimeError("the batch fails after the handler ran")
    decision = service.decide(parse_message(observation("KamLAND", 48.0)))
    assert [list(a.detector_names) for a in decision.alerts] == [["XENONnT", "KamLAND"]]


@pytest.mark.django_db(transaction=True)
def test_a_replayed_file_arrives_now_and_a_pickle_file_is_quarantined(tmp_path, snews_topics):
    """replayalerts' path: no Kafka timestamp, so the message arrives now (not at its own 2030 times)."""
    import time as _time

    from tom_mma_broker.ingest import Outcome
    from tom_mma_broker.replay import replay_files
    from tom_mma_broker.snews.handlers import snews_observation_handler

    (tmp_path / "a.json").write_text(json.dumps(observation("XENONnT", 45.5)))
    (tmp_path / "b.txt").write_bytes(pickle.dumps({"detector_name": "Super-K"}))
    before = _time.time_ns()
    results = list(replay_files([tmp_path / "a.json", tmp_path / "b.txt"], "snews.replay",
                                handlers={"snews.replay": snews_observation_handler}))  # fmt: skip
    assert [r.outcome for r in results] == [Outcome.HANDLED, Outcome.QUARANTINED]
    assert "Python pickle" in results[1].reason
    state = SnewsDeciderState.objects.get().state
    assert before <= state["clock_ns"] <= _time.time_ns()
