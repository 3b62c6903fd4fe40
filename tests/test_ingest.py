"""The ingest service: archive once, run handlers in savepoints, retry, quarantine, health."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from tests import handlers
from tests.testapp.models import HandledMessage
from tom_mma_broker.formats import ArchiveJSONEncoder, DecodeError, decode, detect_format, read_avro_container
from tom_mma_broker.ingest import Envelope, HandlerMap, Ingestor, Outcome
from tom_mma_broker.models import ArchivedAlert, QuarantinedAlert, TopicHealth

DATA = Path(__file__).parent / "data"
ZTF = DATA / "ztf" / "472263571115115000.avro"

pytestmark = pytest.mark.django_db


def envelope(content, topic="t.one", fmt=b"json", message_id=None, offset=0):
    payload = content if isinstance(content, bytes) else json.dumps(content).encode()
    headers = [("_format", fmt), ("_id", (message_id or uuid.uuid4()).bytes)]
    return Envelope(topic=topic, payload=payload, headers=headers, partition=0, offset=offset)


@pytest.fixture(autouse=True)
def _reset_calls():
    handlers.CALLS.clear()
    handlers.FLAKY_FAILURES.clear()


def test_each_message_archived_once_and_handled_once():
    ingestor = Ingestor({"t.one": handlers.record})
    first = [envelope({"seq": i}) for i in range(5)]
    results = ingestor.ingest(first)
    assert [r.outcome for r in results] == [Outcome.HANDLED] * 5
    # redelivery of the same messages (same hop _id) in a later batch, mixed with a new one
    again = ingestor.ingest([*first, envelope({"seq": 99})])
    assert [r.outcome for r in again] == [Outcome.DUPLICATE] * 5 + [Outcome.HANDLED]
    assert ArchivedAlert.objects.count() == 6
    assert sorted(HandledMessage.objects.values_list("seq", flat=True)) == [0, 1, 2, 3, 4, 99]


def test_duplicate_inside_one_batch():
    message_id = uuid.uuid4()
    results = Ingestor({"t.one": handlers.record}).ingest(
        [envelope({"seq": 1}, message_id=message_id), envelope({"seq": 1}, message_id=message_id)]
    )
    assert [r.outcome for r in results] == [Outcome.HANDLED, Outcome.DUPLICATE]
    assert HandledMessage.objects.count() == 1


def test_key_falls_back_to_topic_partition_offset():
    env = Envelope(topic="t.one", payload=b"{}", headers=[], partition=3, offset=42)
    assert env.key == "kafka:t.one/3/42"
    file_env = Envelope(topic="t.one", payload=b"{}", origin="/x.json")
    assert file_env.key.startswith("sha256:t.one/")
    with_id = envelope({"seq": 1}, message_id=uuid.UUID(int=7))
    assert with_id.key == f"id:{uuid.UUID(int=7)}"


def test_raising_handler_is_retried_then_quarantined_and_its_writes_rolled_back():
    ingestor = Ingestor({"t.one": handlers.record}, max_attempts=3, retry_delay=0)
    results = ingestor.ingest([envelope({"seq": 1}), envelope({"seq": 2, "poison": True}), envelope({"seq": 3})])
    assert [r.outcome for r in results] == [Outcome.HANDLED, Outcome.QUARANTINED, Outcome.HANDLED]
    assert handlers.CALLS[2] == 3
    # the poison message's three writes were rolled back with their savepoints
    assert sorted(HandledMessage.objects.values_list("seq", flat=True)) == [1, 3]
    q = QuarantinedAlert.objects.get()
    assert q.stage == "handle" and q.attempts == 3
    assert "ValueError: poison message 2" in q.reason
    assert q.alert.status == ArchivedAlert.Status.QUARANTINED
    assert json.loads(bytes(q.alert.payload)) == {"seq": 2, "poison": True}
    assert "poison message 2" in q.traceback


def test_transient_failure_recovers_within_the_attempts():
    ingestor = Ingestor({"t.one": handlers.flaky}, max_attempts=3, retry_delay=0)
    [result] = ingestor.ingest([envelope({"seq": 5, "fail_times": 2})])
    assert result.outcome is Outcome.HANDLED
    assert handlers.CALLS[5] == 3
    assert HandledMessage.objects.filter(seq=5).count() == 1  # the two failed tries left nothing


def test_undecodable_payload_is_quarantined_without_calling_the_handler():
    ingestor = Ingestor({"t.one": handlers.record})
    results = ingestor.ingest([envelope(b"\x00\x01garbage", fmt=b"avro"), envelope(b"{not json", fmt=b"json")])
    assert [r.outcome for r in results] == [Outcome.QUARANTINED, Outcome.QUARANTINED]
    assert "not an Avro container file" in results[0].reason
    assert "invalid JSON" in results[1].reason
    assert not handlers.CALLS
    assert set(QuarantinedAlert.objects.values_list("stage", flat=True)) == {"decode"}
    # a quarantined message redelivered stays quarantined once, and is not retried
    again = ingestor.ingest([results[0].envelope])
    assert again[0].outcome is Outcome.DUPLICATE
    assert QuarantinedAlert.objects.count() == 2


def test_topic_without_handler_is_archived_with_content():
    payload = ZTF.read_bytes()
    [result] = Ingestor({"ztf": None}).ingest([envelope(payload, topic="ztf", fmt=b"avro")])
    assert result.outcome is Outcome.ARCHIVED
    row = ArchivedAlert.objects.get()
    assert row.format == "avro" and row.size == len(payload) and bytes(row.payload) == payload
    assert row.content["objectId"] == "ZTF17aaajnnn" and row.content["candid"] == 472263571115115000
    # cutouts are summarised, not stored twice
    assert set(row.content["cutoutScience"]["stampData"]) == {"$bytes", "sha256"}
    # the archive is queryable on content
    assert ArchivedAlert.objects.filter(content__objectId=row.content["objectId"]).count() == 1


def test_health_counts_per_topic():
    ingestor = Ingestor({"t.one": handlers.record, "t.two": None}, retry_delay=0)
    batch = [envelope({"seq": 1}), envelope({"seq": 2, "poison": True}), envelope({"seq": 3}, topic="t.two")]
    ingestor.ingest(batch)
    ingestor.ingest(batch[:1])
    one = TopicHealth.objects.get(topic="t.one")
    assert (one.messages_handled, one.messages_quarantined, one.duplicates) == (1, 1, 1)
    assert "poison message 2" in one.last_error and one.last_message_at is not None
    two = TopicHealth.objects.get(topic="t.two")
    assert (two.messages_archived, two.messages_handled) == (1, 0)


def test_handler_map_rules():
    a, b, c = object(), object(), object()
    hm = HandlerMap({"lvk.gw": a, "ztf.*": b, "*": c, "quiet": None})
    assert hm("lvk.gw") is a
    assert hm("ztf.alerts") is b
    assert hm("other") is c
    assert hm("quiet") is None and hm.matches("quiet")
    assert hm.topics() == ["lvk.gw", "quiet"]
    assert not HandlerMap({"x": None}).matches("y")


def test_formats():
    assert detect_format([("_format", b"AVRO")], b"") == "avro"
    assert detect_format([], ZTF.read_bytes()) == "avro"
    assert detect_format([], b"  {") == "json"
    records, schema = read_avro_container(ZTF.read_bytes())
    assert len(records) == 1 and schema["name"].endswith("alert")
    decoded = decode("avro", ZTF.read_bytes())
    assert decoded.model.content["candid"] == records[0]["candid"]
    with pytest.raises(DecodeError, match="truncated|corrupt|sync"):
        decode("avro", ZTF.read_bytes()[:-100])
    with pytest.raises(DecodeError):
        decode("voevent", b"<not xml")


def test_archive_encoder():
    text = ArchiveJSONEncoder().encode({"b": b"\x00" * 10, "nan": float("nan"), "u": uuid.UUID(int=1)})
    assert json.loads(text) == {
        "b": {"$bytes": 10, "sha256": "01d448afd928065458cf670b60f5a594d735af0172c8d67f22a81680132681ca"},
        "nan": None,
        "u": "00000000-0000-0000-0000-000000000001",
    }
