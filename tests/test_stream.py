"""The reliable stream against the real embedded broker (Tansu): at-least-once, idempotent, poison, lost broker."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from django.test import override_settings

from tests import handlers
from tests.conftest import child_env, publish_json, stream_config
from tests.testapp.models import HandledMessage
from tom_mma_broker.consumer import Backoff
from tom_mma_broker.embedded import EmbeddedKafka, create_topics, free_port
from tom_mma_broker.models import ArchivedAlert, QuarantinedAlert, TopicHealth
from tom_mma_broker.streams import ReliableHopskotchAlertStream

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.kafka, pytest.mark.django_db(transaction=True)]


def make_stream(config: dict) -> ReliableHopskotchAlertStream:
    return ReliableHopskotchAlertStream(**config["OPTIONS"])


def wait_for(predicate, timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def test_poison_among_good_messages_is_quarantined_and_the_rest_handled(kafka_broker, topic):
    handlers.CALLS.clear()
    good = [{"seq": i, "text": "x" * 900} for i in range(40)]
    publish_json(kafka_broker, topic, good[:20])
    publish_json(
        kafka_broker,
        topic,
        [{"seq": 1000, "poison": True}],
        raw=[(b"\x00\x01not avro at all", "avro"), (b"{truncated json", "json")],
    )
    publish_json(kafka_broker, topic, good[20:])

    stream = make_stream(stream_config(topic))
    stats = stream.listen(max_messages=43, idle_timeout=15)

    assert stats["handled"] == 40 and stats["quarantined"] == 3
    assert sorted(HandledMessage.objects.values_list("seq", flat=True)) == list(range(40))
    assert handlers.CALLS[1000] == 3  # bounded retries: MAX_HANDLER_ATTEMPTS
    quarantined = {q.alert.offset: q for q in QuarantinedAlert.objects.select_related("alert")}
    assert sorted(quarantined) == [20, 21, 22]
    assert "poison message 1000" in quarantined[20].reason and quarantined[20].stage == "handle"
    assert "not an Avro container file" in quarantined[21].reason and quarantined[21].stage == "decode"
    assert bytes(quarantined[21].alert.payload) == b"\x00\x01not avro at all"
    assert "invalid JSON" in quarantined[22].reason
    assert all(q.alert.topic == topic for q in quarantined.values())
    health = TopicHealth.objects.get(topic=topic)
    assert (health.messages_handled, health.messages_quarantined) == (40, 3)


class CrashBeforeOffsetCommit(ReliableHopskotchAlertStream):
    """Dies after the database commit of its first batch, before committing the offsets."""

    def _commit(self, consumer, messages):
        raise KeyboardInterrupt("simulated crash between the DB commit and the offset commit")


def test_redelivery_after_a_crash_runs_no_handler_twice(kafka_broker, topic):
    publish_json(kafka_broker, topic, [{"seq": i} for i in range(30)])
    config = stream_config(topic)
    with pytest.raises(KeyboardInterrupt):
        CrashBeforeOffsetCommit(**config["OPTIONS"]).listen(idle_timeout=10)
    handled_before = HandledMessage.objects.count()
    assert handled_before > 0

    # the same group re-reads the uncommitted messages: they are duplicates now
    stats = make_stream(config).listen(max_messages=30, idle_timeout=10)
    assert stats["duplicate"] == handled_before
    assert stats["handled"] == 30 - handled_before
    assert HandledMessage.objects.count() == 30
    assert sorted(HandledMessage.objects.values_list("seq", flat=True)) == list(range(30))
    assert TopicHealth.objects.get(topic=topic).duplicates == handled_before


def _start_readstreams(config: dict, batch_size: int) -> subprocess.Popen:
    env = child_env(TOM_MMA_TEST_ALERT_STREAMS=json.dumps([config]), TOM_MMA_TEST_BATCH_SIZE=str(batch_size))
    return subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "readstreams"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


@pytest.mark.slow
def test_sigkill_mid_stream_loses_nothing_and_duplicates_nothing(kafka_broker, topic):
    total = 3000
    publish_json(kafka_broker, topic, [{"seq": i, "text": "x" * 900} for i in range(total)])
    config = stream_config(topic)
    kills = 0
    for round_ in range(3):
        proc = _start_readstreams(config, batch_size=50)
        try:
            target = total * (round_ + 1) // 4
            reached = wait_for(lambda t=target: ArchivedAlert.objects.filter(topic=topic).count() >= t, 90)
            assert reached, f"consumer made no progress: {proc.stderr.read1(4000) if proc.poll() is not None else ''}"
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
    archived_after_kills = ArchivedAlert.objects.filter(topic=topic).count()
    assert archived_after_kills < total, "the kills did not land mid-stream"

    proc = _start_readstreams(config, batch_size=50)
    try:
        assert wait_for(lambda: ArchivedAlert.objects.filter(topic=topic).count() >= total, 120)
        time.sleep(1.5)  # would a duplicate still arrive?
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    assert kills == 3
    assert ArchivedAlert.objects.filter(topic=topic).count() == total  # 0 lost
    seqs = list(HandledMessage.objects.values_list("seq", flat=True))
    assert len(seqs) == total and set(seqs) == set(range(total))  # 0 duplicated, 0 lost


@pytest.mark.slow
def test_lost_broker_is_retried_with_backoff_and_the_stream_resumes(tmp_path, caplog, topic):
    port = free_port()
    broker = EmbeddedKafka(tmp_path / "own-broker")
    info = broker.start(["lost.topic"], port=port)
    try:
        publish_json(info, "lost.topic", [{"seq": i} for i in range(5)])
        stream = make_stream(stream_config("lost.topic", url=info.url))
        caplog.set_level(logging.WARNING, logger="tom_mma_broker.streams")
        thread = threading.Thread(target=stream.listen, daemon=True)
        thread.start()
        assert wait_for(lambda: HandledMessage.objects.count() == 5, 30)

        broker.stop()
        assert wait_for(lambda: sum("stream unavailable (attempt" in r.getMessage() for r in caplog.records) >= 3, 60)
        attempts = [r.getMessage() for r in caplog.records if "stream unavailable (attempt" in r.getMessage()]
        assert "attempt 1)" in attempts[0] and "attempt 2)" in attempts[1]
        assert TopicHealth.objects.get(topic="lost.topic").last_error

        # the broker comes back (empty: Tansu keeps memory only) on the same port
        info = broker.start(["lost.topic"], port=port)
        publish_json(info, "lost.topic", [{"seq": i} for i in range(100, 103)])
        assert wait_for(lambda: HandledMessage.objects.count() == 8, 60)
        stream.stop()
        thread.join(15)
        assert not thread.is_alive()
    finally:
        broker.stop()
    assert sorted(HandledMessage.objects.values_list("seq", flat=True)) == [0, 1, 2, 3, 4, 100, 101, 102]


def test_backoff_grows_with_jitter_and_is_capped():
    import random

    b = Backoff(base=1.0, cap=8.0, rng=random.Random(1))
    ceilings = []
    for _ in range(8):
        ceilings.append(b.ceiling())
        delay = b.next()
        assert 0.1 <= delay <= ceilings[-1]
    assert ceilings == [1, 2, 4, 8, 8, 8, 8, 8]
    b.reset()
    assert b.ceiling() == 1


def test_stream_without_topics_or_with_bad_start_is_refused():
    from django.core.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured):
        ReliableHopskotchAlertStream(URL="embedded", TOPIC_HANDLERS={})
    with pytest.raises(ImproperlyConfigured):
        ReliableHopskotchAlertStream(URL="embedded", TOPIC_HANDLERS={"a": None}, START_POSITION="MIDDLE")


def test_stream_auth_options():
    """SCRAM credentials become a hop Auth (SCiMMA's auth server cannot run here, so this stops at the
    client-side object); no username, or AUTH False, means no authentication."""
    from hop.auth import Auth

    with override_settings():
        plain = ReliableHopskotchAlertStream(URL="embedded", TOPIC_HANDLERS={"a": None})
        assert plain.stream_auth() is False
        scram = ReliableHopskotchAlertStream(
            URL="kafka://kafka.scimma.org", USERNAME="u", PASSWORD="p", TOPIC_HANDLERS={"a": None}
        )
        auth = scram.stream_auth()
        assert isinstance(auth, Auth) and auth.username == "u" and auth.mechanism == "SCRAM-SHA-512"
        off = ReliableHopskotchAlertStream(
            URL="kafka://x:9092", USERNAME="u", PASSWORD="p", AUTH=False, TOPIC_HANDLERS={"a": None}
        )
        assert off.stream_auth() is False


def test_wildcard_topics_are_resolved_against_the_broker(kafka_broker):
    create_topics(kafka_broker.bootstrap, ["wild.alpha", "wild.beta", "other.gamma"])
    stream = ReliableHopskotchAlertStream(URL="embedded", TOPIC_HANDLERS={"wild.*": None, "fixed": None})
    assert stream.topics(["wild.alpha", "wild.beta", "other.gamma", "__consumer_offsets"]) == [
        "fixed",
        "wild.alpha",
        "wild.beta",
    ]


def test_a_missing_topic_reopens_the_stream_only_once_it_exists(kafka_broker, topic):
    later = f"test.later.{uuid.uuid4().hex[:8]}"
    stream = ReliableHopskotchAlertStream(URL="embedded", TOPIC_HANDLERS={topic: None, later: None})
    consumer, reading = stream._open()
    try:
        stream._reading = reading
        assert reading == [topic] and stream._missing_topics == [later]
        # still missing: nothing to reopen for (it reopened at every check, dropping its prefetched batches)
        assert not stream._topics_appeared()
        create_topics(kafka_broker.bootstrap, [later])
        assert stream._topics_appeared()
    finally:
        consumer.close()


def test_consumer_takes_the_tuning_and_the_settings_librdkafka_config(settings, kafka_broker, topic):
    from tom_mma_broker.consumer import CONSUMER_TUNING, open_consumer

    settings.TOM_MMA_BROKER = {**settings.TOM_MMA_BROKER, "CONSUMER_CONFIG": {"fetch.max.bytes": 1234567}}
    consumer = open_consumer(kafka_broker.url, [topic], "g-tuning", False, "EARLIEST", error_callback=print)
    try:
        config = consumer.conf._to_confluent_kafka()
        assert config["fetch.queue.backoff.ms"] == CONSUMER_TUNING["fetch.queue.backoff.ms"]
        assert config["fetch.max.bytes"] == 1234567
        # the stream commits offsets itself, after the database commit
        assert config["enable.auto.offset.store"] is False
        assert {tp.topic for tp in consumer._consumer.assignment()} == {topic}
    finally:
        consumer.close()


def test_a_broker_on_this_machine_gets_a_short_fetch_wait_and_a_remote_one_librdkafkas(settings):
    # the embedded broker holds a fetch for most of fetch.wait.max.ms: a short one there; Kafka answers at once
    from tom_mma_broker.consumer import LOCAL_TUNING, consumer_config

    local = consumer_config("kafka://127.0.0.1:19092", "g", False, "EARLIEST")._to_confluent_kafka()
    assert local["fetch.wait.max.ms"] == LOCAL_TUNING["fetch.wait.max.ms"] == 5
    remote = consumer_config("kafka://kafka.scimma.org:9092", "g", False, "EARLIEST")._to_confluent_kafka()
    assert "fetch.wait.max.ms" not in remote
    settings.TOM_MMA_BROKER = {**settings.TOM_MMA_BROKER, "CONSUMER_CONFIG": {"fetch.wait.max.ms": 50}}
    mine = consumer_config("kafka://localhost:19092", "g", False, "EARLIEST")._to_confluent_kafka()
    assert mine["fetch.wait.max.ms"] == 50  # the settings' own value wins


def test_scram_credentials_reach_the_consumer_config():
    # SCiMMA's SASL/SCRAM server cannot run here (the embedded broker has no SASL): check the librdkafka
    # configuration the stream's consumer is built with, from the options a Hopskotch user gives
    from tom_mma_broker.consumer import CONSUMER_TUNING, ConsumerConfig
    from tom_mma_broker.streams import ReliableHopskotchAlertStream

    stream = ReliableHopskotchAlertStream(
        URL="kafka://kafka.scimma.org", USERNAME="tom-user", PASSWORD="s3cret", TOPIC_HANDLERS={"igwn.gwalert": None}
    )
    auth = stream.stream_auth()
    config = ConsumerConfig(
        broker_urls=["kafka.scimma.org:9092"], group_id="g", auth=auth, librdkafka=dict(CONSUMER_TUNING)
    )._to_confluent_kafka()
    assert config["sasl.username"] == "tom-user" and config["sasl.password"] == "s3cret"
    assert config["sasl.mechanism"] == "SCRAM-SHA-512" and config["security.protocol"] == "SASL_SSL"
    assert config["fetch.queue.backoff.ms"] == CONSUMER_TUNING["fetch.queue.backoff.ms"]


@pytest.fixture
def hop_credentials(tmp_path, monkeypatch):
    """hop's credential file as ``hop auth add`` writes it, in a private XDG_CONFIG_HOME."""
    from hop.auth import Auth, write_auth_data

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    path = tmp_path / "hop" / "auth.toml"
    write_auth_data(str(path), [
        Auth("guide-user", "from-hop-auth-add", host="kafka.scimma.org"),
        Auth("other-user", "other-secret", host="kafka.example.org"),
    ])  # fmt: skip
    return path


def test_hops_stored_credentials_are_used_when_none_are_configured(hop_credentials, caplog):
    # SCiMMA's SCRAM server cannot run here: the consumer configuration built for the stream is checked
    from tom_mma_broker.consumer import CONSUMER_TUNING, ConsumerConfig
    from tom_mma_broker.streams import ReliableHopskotchAlertStream

    stream = ReliableHopskotchAlertStream(
        URL="kafka://kafka.scimma.org", USERNAME="", PASSWORD="", TOPIC_HANDLERS={"igwn.gwalert": None}
    )
    with caplog.at_level("DEBUG"):
        auth = stream.stream_auth()
    config = ConsumerConfig(
        broker_urls=["kafka.scimma.org:9092"], group_id="g", auth=auth, librdkafka=dict(CONSUMER_TUNING)
    )._to_confluent_kafka()
    assert config["sasl.username"] == "guide-user" and config["sasl.password"] == "from-hop-auth-add"
    assert config["security.protocol"] == "SASL_SSL"
    assert "from-hop-auth-add" not in caplog.text  # never logged
    # configured credentials win; the embedded broker and loopback take none
    from tom_mma_broker.kafka import hop_auth

    assert hop_auth("me", "pw", url="kafka://kafka.scimma.org").username == "me"
    assert hop_auth("", "", url="embedded") is False
    assert hop_auth("", "", url="kafka://127.0.0.1:9092") is False
    assert hop_auth("", "", url="kafka://kafka.nowhere.org") is False  # hop stores nothing for that host


def test_hops_stored_credentials_errors_are_clear(hop_credentials):
    from django.core.exceptions import ImproperlyConfigured
    from hop.auth import Auth, write_auth_data

    from tom_mma_broker.kafka import hop_auth

    write_auth_data(
        str(hop_credentials), [Auth("a", "x", host="kafka.scimma.org"), Auth("b", "y", host="kafka.scimma.org")]
    )
    with pytest.raises(ImproperlyConfigured, match="several of hop's stored credentials match kafka.scimma.org"):
        hop_auth("", "", url="kafka://kafka.scimma.org")
    assert hop_auth("b", "", url="kafka://kafka.scimma.org").password == "y"  # USERNAME picks one
    hop_credentials.chmod(0o644)
    with pytest.raises(ImproperlyConfigured, match="unsafe permissions"):
        hop_auth("", "", url="kafka://kafka.scimma.org")
