"""Reliability of the stream on the real broker (Tansu), on SQLite and PostgreSQL: poison content that the
database refuses, transient database errors, permanent handler errors, misconfiguration, hop test messages."""

from __future__ import annotations

import io
import json
import threading

import fastavro
import pytest
from confluent_kafka import Producer
from django.core.exceptions import ImproperlyConfigured

from tests import handlers
from tests.conftest import publish_json, stream_config
from tests.test_stream import wait_for
from tests.testapp.models import HandledMessage
from tom_mma_broker.kafka import hop_headers, open_producer
from tom_mma_broker.models import ArchivedAlert, QuarantinedAlert, TopicHealth
from tom_mma_broker.streams import ReliableHopskotchAlertStream

pytestmark = [pytest.mark.kafka, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _reset_calls():
    handlers.CALLS.clear()
    handlers.TRANSIENT_DB_FAILURES.clear()


def run_stream(config: dict, max_messages: int, limit: float = 90.0, **options) -> dict:
    """Run the stream in a thread until ``max_messages`` (or idle); stop it if it stalls past ``limit`` s.

    A stream that stalls (re-reading one batch forever) returns its counts so far instead of hanging the test.
    """
    stream = ReliableHopskotchAlertStream(**{**config["OPTIONS"], **options})
    out: dict = {}
    thread = threading.Thread(
        target=lambda: out.update(stream.listen(max_messages=max_messages, idle_timeout=10)), daemon=True
    )
    thread.start()
    thread.join(limit)
    if thread.is_alive():
        stream.stop()
        thread.join(30)
    return out or dict(stream.stats)


def publish_raw(broker, topic: str, payloads: list[bytes], fmt: str = "json", extra=()) -> list:
    ids = []
    with open_producer(broker.url, topic) as producer:
        for payload in payloads:
            message_id, headers = hop_headers(fmt, extra=extra)
            producer.write_raw(payload, headers, topic=topic)
            ids.append(message_id)
        producer.flush()
    return ids


def avro_file(record: dict) -> bytes:
    schema = {
        "type": "record",
        "name": "Poison",
        "fields": [{"name": "seq", "type": "long"}, {"name": "name", "type": "string"}],
    }
    buf = io.BytesIO()
    fastavro.writer(buf, fastavro.parse_schema(schema), [record])
    return buf.getvalue()


def test_content_the_database_refuses_does_not_stall_the_stream(kafka_broker, topic):
    """NUL characters (jsonb rejects them), lone surrogates, huge integers, deep nesting, a timestamp beyond
    year 9999: before, each one made the batch insert fail, and the stream re-read that batch forever."""
    publish_json(kafka_broker, topic, [{"seq": i} for i in range(5)])
    nul_json = b'{"seq": 100, "text": "a\\u0000b", "key\\u0000": 1}'
    poison = [
        nul_json,
        b'{"seq": 101, "text": "\\ud800 lone surrogate"}',
        b'{"seq": 102, "n": 1000000000000000000000000000000}',
        b'{"seq": 103, "deep": ' + b"[" * 300 + b"]" * 300 + b"}",  # deeper than orjson's 255 levels
        b"[" * 5000 + b"]" * 5000,  # deeper than Python's recursion limit: undecodable
    ]
    publish_raw(kafka_broker, topic, poison)
    publish_raw(kafka_broker, topic, [avro_file({"seq": 104, "name": "x\x00y"})], fmt="avro")
    producer = Producer({"bootstrap.servers": kafka_broker.bootstrap})
    _, headers = hop_headers("json")
    producer.produce(topic, b'{"seq": 105}', headers=headers, timestamp=300_000_000_000_000)  # year ~11476
    producer.flush(10)
    publish_json(kafka_broker, topic, [{"seq": i} for i in range(5, 10)])

    stats = run_stream(stream_config(topic), max_messages=17)

    assert stats["handled"] == 16 and stats["quarantined"] == 1
    assert sorted(HandledMessage.objects.values_list("seq", flat=True)) == [*range(10), *range(100, 106)]
    rows = {r.content["seq"]: r for r in ArchivedAlert.objects.filter(topic=topic) if r.content}
    assert bytes(rows[100].payload) == nul_json  # the raw bytes are kept as they came
    assert rows[100].content == {"seq": 100, "text": "a\ufffdb", "key\ufffd": 1}
    assert rows[101].content["text"] == "? lone surrogate"
    assert rows[102].content["n"] == 10**30
    assert rows[104].content["name"] == "x\ufffdy"
    assert rows[105].kafka_timestamp is None
    quarantined = QuarantinedAlert.objects.get(alert__topic=topic)
    assert quarantined.stage == "decode" and "nested too deeply" in quarantined.reason
    assert quarantined.alert.content is None and quarantined.alert.size == 10000
    health = TopicHealth.objects.get(topic=topic)
    assert (health.messages_handled, health.messages_quarantined) == (16, 1)


def test_transient_database_error_in_a_handler_retries_the_batch_without_quarantine(kafka_broker, topic):
    """A deadlock or 'database is locked' inside a handler is the database's failure: before, the message
    was retried MAX_HANDLER_ATTEMPTS (3) times inside the batch, then quarantined."""
    publish_json(kafka_broker, topic, [{"seq": 1, "fail_times": 3}, {"seq": 2}, {"seq": 3}])

    stats = run_stream(stream_config(topic, handler="tests.handlers.transient_db"), max_messages=3)

    assert stats["handled"] == 3 and stats["quarantined"] == 0
    assert not QuarantinedAlert.objects.exists()
    assert handlers.CALLS[1] == 4  # three failed batches, then the handled one
    assert sorted(HandledMessage.objects.values_list("seq", flat=True)) == [1, 2, 3]  # each once
    assert ArchivedAlert.objects.filter(topic=topic, status="handled").count() == 3
    assert "OperationalError: deadlock detected" in TopicHealth.objects.get(topic=topic).last_error


def test_permanent_handler_error_is_quarantined_at_the_first_attempt(kafka_broker, topic):
    """An exception class with ``permanent = True`` is quarantined at once (before: tried 3 times); its reason,
    which holds a NUL from the alert, is stored escaped (PostgreSQL's text refuses NUL)."""
    publish_json(kafka_broker, topic, [{"seq": 1}, {"seq": 2, "reject": True, "text": "bad\x00value"}, {"seq": 3}])

    stats = run_stream(stream_config(topic, handler="tests.handlers.reject_permanently"), max_messages=3)

    assert stats["handled"] == 2 and stats["quarantined"] == 1
    assert handlers.CALLS[2] == 1
    quarantined = QuarantinedAlert.objects.get(alert__topic=topic)
    assert quarantined.attempts == 1 and quarantined.stage == "handle"
    assert quarantined.reason == "RejectedAlert: rejected: bad\\x00value"
    assert quarantined.error_type == "tests.handlers.RejectedAlert"
    assert "bad\\x00value" in TopicHealth.objects.get(topic=topic).last_error


def test_test_messages_are_archived_not_dropped(kafka_broker, topic):
    """hop's ``_test`` messages: before, the stream dropped them without a trace."""
    publish_json(kafka_broker, topic, [{"seq": 1}, {"seq": 2}])
    [test_id] = publish_raw(kafka_broker, topic, [json.dumps({"seq": 3}).encode()], extra=[("_test", b"true")])

    stats = run_stream(stream_config(topic), max_messages=3)

    assert stats["handled"] == 2 and stats["test"] == 1
    assert sorted(HandledMessage.objects.values_list("seq", flat=True)) == [1, 2]  # the handler skipped it
    test_row = ArchivedAlert.objects.get(message_id=test_id)
    assert test_row.status == ArchivedAlert.Status.TEST and test_row.content == {"seq": 3}
    assert ["_test", "true"] in test_row.headers
    health = TopicHealth.objects.get(topic=topic)
    assert (health.messages_handled, health.messages_test) == (2, 1)


def test_test_messages_are_handled_when_not_ignored(kafka_broker, topic):
    publish_raw(kafka_broker, topic, [json.dumps({"seq": 3}).encode()], extra=[("_test", b"true")])
    stats = run_stream(stream_config(topic), max_messages=1, IGNORE_TEST=False)
    assert stats["handled"] == 1 and stats["test"] == 0
    assert list(HandledMessage.objects.values_list("seq", flat=True)) == [3]


def test_misconfigured_url_fails_at_start_and_is_not_retried(kafka_broker, topic):
    """Before, a URL that is not kafka:// was a ValueError: 'stream unavailable', retried forever."""
    for url in ("http://127.0.0.1:9092", "127.0.0.1:9092", "kafka://"):
        with pytest.raises(ImproperlyConfigured, match="kafka://host:port"):
            ReliableHopskotchAlertStream(**stream_config(topic, url=url)["OPTIONS"])
    # a URL that goes bad after construction (e.g. edited attributes) stops listen() instead of looping
    stream = ReliableHopskotchAlertStream(**stream_config(topic)["OPTIONS"])
    stream.url = "https://example.org/kafka"
    with pytest.raises(ImproperlyConfigured):
        stream.listen(idle_timeout=5)
    assert not TopicHealth.objects.filter(topic=topic).exclude(last_error="").exists()


def test_missing_topic_is_still_retried(kafka_broker):
    """A topic that does not exist (yet) is a broker-side condition: retried with backoff, not refused."""
    stream = ReliableHopskotchAlertStream(**stream_config("does.not.exist.yet")["OPTIONS"])
    thread = threading.Thread(target=stream.listen, daemon=True)
    thread.start()
    recorded = TopicHealth.objects.filter(topic="does.not.exist.yet", last_error__contains="none of the topics")
    assert wait_for(recorded.exists, 30)
    assert thread.is_alive()  # it waits for the topic, it does not give up
    stream.stop()
    thread.join(15)
    assert not thread.is_alive()
