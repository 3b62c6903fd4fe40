"""Reliability of the ingest service on the test database (SQLite or PostgreSQL): rows the database refuses,
transient database errors, permanent handler errors, keys that fit their column, GCN Classic text."""

from __future__ import annotations

import json
import uuid

import pytest
from django.db import OperationalError, connection

from tests import handlers
from tests.testapp.models import HandledMessage
from tom_mma_broker.formats import decode, detect_format
from tom_mma_broker.ingest import KEY_MAX_LENGTH, Envelope, Ingestor, Outcome, is_permanent
from tom_mma_broker.models import ArchivedAlert, QuarantinedAlert, TopicHealth

pytestmark = pytest.mark.django_db

# A made-up GCN Classic text notice (the layout of GCN's LVC notices; the values are invented for the test).
GCN_TEXT = b"""TITLE:            GCN/LVC NOTICE
NOTICE_DATE:      Thu 17 Aug 17 13:21:42 UT
NOTICE_TYPE:      LVC Preliminary
TRIGGER_NUM:      S999999zz
TRIGGER_DATE:     17982 TJD;   229 DOY;   2017/08/17 (yyyy/mm/dd)
COMMENTS:         A made-up notice for the tom-mma tests.
COMMENTS:         It is not a real event.
"""


def envelope(content, topic="t.one", message_id=None, **kwargs) -> Envelope:
    payload = content if isinstance(content, bytes) else json.dumps(content).encode()
    headers = [("_format", b"json"), ("_id", (message_id or uuid.uuid4()).bytes)]
    return Envelope(topic=topic, payload=payload, headers=headers, partition=0, offset=0, **kwargs)


@pytest.fixture(autouse=True)
def _reset_calls():
    handlers.CALLS.clear()
    handlers.TRANSIENT_DB_FAILURES.clear()


def test_nul_in_content_is_cleaned_and_the_payload_kept():
    payload = b'{"seq": 1, "text": "a\\u0000b"}'
    [result] = Ingestor({"t.one": handlers.record}).ingest([envelope(payload)])
    assert result.outcome is Outcome.HANDLED
    row = ArchivedAlert.objects.get()
    assert bytes(row.payload) == payload and row.content == {"seq": 1, "text": "a\ufffdb"}
    assert ArchivedAlert.objects.filter(content__text="a\ufffdb").exists()  # still queryable


def test_a_row_the_database_refuses_is_quarantined_alone():
    """A DataError used to abort the batch (only IntegrityError fell back to one by one). A topic name longer
    than Kafka allows (only a file replay can bring one) is refused by PostgreSQL's varchar(249)."""
    long_topic = "t." + "x" * 300
    ingestor = Ingestor({"t.one": handlers.record, "*": None})
    batch = [envelope({"seq": 1}), envelope({"seq": 2}, topic=long_topic), envelope({"seq": 3})]
    results = ingestor.ingest(batch)

    assert sorted(HandledMessage.objects.values_list("seq", flat=True)) == [1, 3]
    if connection.vendor == "postgresql":
        assert [r.outcome for r in results] == [Outcome.HANDLED, Outcome.QUARANTINED, Outcome.HANDLED]
        q = QuarantinedAlert.objects.get()
        assert q.stage == "archive" and q.error_type == "django.db.utils.DataError"
        assert q.alert.content is None and json.loads(bytes(q.alert.payload)) == {"seq": 2}
        assert q.alert.topic == long_topic[:249] and len(q.alert.key) <= KEY_MAX_LENGTH
        assert TopicHealth.objects.get(topic=long_topic[:249]).messages_quarantined == 1
    else:  # SQLite does not enforce varchar lengths: the row is simply archived
        assert [r.outcome for r in results] == [Outcome.HANDLED, Outcome.ARCHIVED, Outcome.HANDLED]
    # nothing is lost or doubled when the batch comes again
    assert [r.outcome for r in ingestor.ingest(batch)] == [Outcome.DUPLICATE] * 3
    assert ArchivedAlert.objects.count() == 3


def test_file_key_of_a_long_topic_fits_its_column(tmp_path):
    """``sha256:`` + a 249-character topic + the digest is 321 characters: PostgreSQL refused it."""
    path = tmp_path / "a.json"
    path.write_text(json.dumps({"seq": 1}))
    topic_a, topic_b = "a" * 248 + "1", "a" * 248 + "2"
    env_a, env_b = Envelope.from_file(path, topic_a), Envelope.from_file(path, topic_b)
    assert len(env_a.key) <= KEY_MAX_LENGTH and env_a.key != env_b.key
    short = Envelope.from_file(path, "short.topic")
    assert short.key.startswith("sha256:short.topic/")  # unchanged for ordinary topics
    results = Ingestor({}).ingest([env_a, env_b])
    assert [r.outcome for r in results] == [Outcome.ARCHIVED] * 2
    assert set(ArchivedAlert.objects.values_list("topic", flat=True)) == {topic_a, topic_b}


def test_transient_database_error_is_raised_and_nothing_of_the_batch_is_kept():
    ingestor = Ingestor({"t.one": handlers.transient_db}, max_attempts=3, retry_delay=0)
    batch = [envelope({"seq": 1}), envelope({"seq": 2, "fail_times": 1})]
    with pytest.raises(OperationalError, match="deadlock"):
        ingestor.ingest(batch)
    assert handlers.CALLS[2] == 1  # not retried inside the batch: the batch is the unit of retry
    assert not ArchivedAlert.objects.exists() and not QuarantinedAlert.objects.exists()
    assert [r.outcome for r in ingestor.ingest(batch)] == [Outcome.HANDLED, Outcome.HANDLED]
    assert sorted(HandledMessage.objects.values_list("seq", flat=True)) == [1, 2]


def test_permanent_error_is_quarantined_without_retries():
    ingestor = Ingestor({"t.one": handlers.reject_permanently}, max_attempts=5, retry_delay=0)
    [result] = ingestor.ingest([envelope({"seq": 7, "reject": True, "text": "no"})])
    assert result.outcome is Outcome.QUARANTINED and handlers.CALLS[7] == 1
    assert QuarantinedAlert.objects.get().attempts == 1
    assert is_permanent(handlers.RejectedAlert()) and not is_permanent(ValueError())


def test_gcn_classic_text_is_detected_and_decoded():
    assert detect_format([], GCN_TEXT) == "gcntextnotice"
    assert detect_format([], b"some other text") == "blob"
    decoded = decode("gcntextnotice", GCN_TEXT)
    assert decoded.model.fields["trigger_num"] == "S999999zz"
    [result] = Ingestor({"gcn.classic.text": None}).ingest(
        [Envelope(topic="gcn.classic.text", payload=GCN_TEXT, partition=0, offset=5)]
    )
    assert result.outcome is Outcome.ARCHIVED
    row = ArchivedAlert.objects.get()
    assert row.format == "gcntextnotice" and row.content["fields"]["notice_type"] == "LVC Preliminary"
    assert row.content["fields"]["comments"].splitlines() == [
        "A made-up notice for the tom-mma tests.",
        "It is not a real event.",
    ]
