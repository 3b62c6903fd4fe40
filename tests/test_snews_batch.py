"""The SNEWS decider takes a whole ingest batch in memory: one state write and one outbox insert per batch.

Through the ingest path the stream and ``replayalerts`` share (:class:`tom_mma_broker.ingest.Ingestor`), with
the messages' Kafka timestamps set as the stream sets them; the database is the suite's (both legs).
"""

from __future__ import annotations

import json
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tom_mma_broker.ingest import Envelope, Ingestor, Outcome
from tom_mma_broker.models import OutboxMessage, QuarantinedAlert, SnewsDeciderState
from tom_mma_broker.snews import service
from tom_mma_broker.snews.decider import Decider
from tom_mma_broker.snews.handlers import snews_observation_handler
from tom_mma_broker.snews.messages import parse_message

pytestmark = pytest.mark.django_db(transaction=True)

TOPIC = "snews.experiments-batch"
T0_MS = 1_893_500_000_000  # 2030-01-01T12:53:20Z: the Kafka timestamp of the first message


def body(detector: str, seconds: float) -> dict:
    return {"tier": "CoincidenceTier", "detector_name": detector, "uuid": f"{detector}-{seconds}",
            "neutrino_time_utc": f"2030-01-01T12:34:{seconds:09.6f}", "p_val": 0.2}  # fmt: skip


def envelopes(bodies: list[dict], start: int = 0) -> list[Envelope]:
    return [
        Envelope(topic=TOPIC, payload=json.dumps(b).encode(), headers=[("_format", b"json")], partition=0,
                 offset=start + i, timestamp_ms=T0_MS + 10 * (start + i))
        for i, b in enumerate(bodies)
    ]  # fmt: skip


@pytest.fixture(autouse=True)
def fresh_decider():
    service.reset_cache()
    yield
    service.reset_cache()


def expected_alerts(bodies: list[dict]) -> list[tuple[str, list[str]]]:
    """What one decider in memory makes of the messages (the reference of the batched path)."""
    decider, out = service.decider_from_settings(), []
    for i, b in enumerate(bodies):
        decision = decider.process(parse_message(b), (T0_MS + 10 * i) * 1_000_000)
        out += [(a.alert_type, list(a.detector_names)) for a in decision.alerts]
    return out


def queued_alerts() -> list[tuple[str, list[str]]]:
    rows = OutboxMessage.objects.filter(kind="snews-alert").order_by("id").values_list("payload", flat=True)
    return [(p["alert_type"], p["detector_names"]) for p in (json.loads(bytes(r)) for r in rows)]


BODIES = [body(f"detector-{i:02d}", 40 + i * 0.25) for i in range(12)] + [body("detector-03", 41.0)]


def test_a_batch_writes_the_state_once_and_queues_its_alerts_in_one_insert():
    ingestor = Ingestor({TOPIC: snews_observation_handler})
    with CaptureQueriesContext(connection) as queries:
        results = ingestor.ingest(envelopes(BODIES))
    assert [r.outcome for r in results] == [Outcome.HANDLED] * len(BODIES)
    sql = [q["sql"] for q in queries.captured_queries]
    state_table = SnewsDeciderState._meta.db_table
    outbox_table = OutboxMessage._meta.db_table
    assert sum(s.startswith("UPDATE") and state_table in s for s in sql) == 1
    assert sum(s.startswith("INSERT") and outbox_table in s for s in sql) == 1
    assert queued_alerts() == expected_alerts(BODIES)
    assert queued_alerts()[-1][0] == "UPDATE" and len(queued_alerts()) == len(BODIES) - 1
    assert SnewsDeciderState.objects.get().messages == len(BODIES)


def test_the_next_batch_goes_on_from_the_cached_state_and_a_restart_from_the_database():
    ingestor = Ingestor({TOPIC: snews_observation_handler})
    ingestor.ingest(envelopes(BODIES[:5]))
    ingestor.ingest(envelopes(BODIES[5:9], start=5))
    service.reset_cache()  # a restart: the rest from the database's state alone
    ingestor.ingest(envelopes(BODIES[9:], start=9))
    assert queued_alerts() == expected_alerts(BODIES)
    assert SnewsDeciderState.objects.get().messages == len(BODIES)


def test_a_stale_cached_state_is_reloaded_and_the_batch_taken_again_from_it():
    ingestor = Ingestor({TOPIC: snews_observation_handler})
    ingestor.ingest(envelopes(BODIES[:5]))
    # another process wrote the same state since (a new revision): this process's cache is stale
    SnewsDeciderState.objects.update(revision=uuid.uuid4())
    ingestor.ingest(envelopes(BODIES[5:], start=5))
    assert queued_alerts() == expected_alerts(BODIES)


def test_a_batch_that_rolls_back_leaves_no_state_and_no_alert_and_is_taken_again(monkeypatch):
    from django.db import OperationalError

    ingestor = Ingestor({TOPIC: snews_observation_handler})
    ingestor.ingest(envelopes(BODIES[:5]))
    real = service._queue

    def queue_then_fail(decisions):  # the database fails after the decider's writes: all of the batch rolls back
        real(decisions)
        raise OperationalError("the connection was lost")

    batch = envelopes(BODIES[5:], start=5)
    monkeypatch.setattr(service, "_queue", queue_then_fail)
    with pytest.raises(OperationalError):
        ingestor.ingest(batch)
    monkeypatch.setattr(service, "_queue", real)
    assert SnewsDeciderState.objects.get().messages == 5 and len(queued_alerts()) == 4
    ingestor.ingest(batch)  # the stream reads the batch again
    assert queued_alerts() == expected_alerts(BODIES)


def test_a_message_failing_inside_the_decider_reloads_the_state_for_the_rest(monkeypatch):
    real = Decider.process
    bad = BODIES[2]["uuid"]

    def flaky(self, message, arrival_ns=None):
        if message.uid == bad:  # half-way through this message, every time
            self.seq += 1000
            raise RuntimeError("a bug in the decider")
        return real(self, message, arrival_ns)

    monkeypatch.setattr(Decider, "process", flaky)
    results = Ingestor({TOPIC: snews_observation_handler}, max_attempts=2, retry_delay=0).ingest(envelopes(BODIES[:6]))
    assert [r.outcome for r in results].count(Outcome.QUARANTINED) == 1
    assert "a bug in the decider" in results[2].reason
    # the batch took the others (the state reloaded, as the decider held half of the bad one); it alone, twice
    assert QuarantinedAlert.objects.get().attempts == 2
    kept = [b for i, b in enumerate(BODIES[:6]) if i != 2]
    monkeypatch.setattr(Decider, "process", real)
    assert queued_alerts() == expected_alerts(kept)
    assert SnewsDeciderState.objects.get().messages == 5


def test_the_handler_runs_without_a_savepoint_in_a_batch():
    # a batch handler's call runs without a savepoint: no SAVEPOINT / RELEASE pair per message, nor per batch
    ingestor = Ingestor({TOPIC: snews_observation_handler})
    ingestor.ingest(envelopes(BODIES[:3]))  # the first batch makes the state row (get_or_create's savepoint)
    with CaptureQueriesContext(connection) as queries:
        results = ingestor.ingest(envelopes(BODIES[3:], start=3))
    assert [r.outcome for r in results] == [Outcome.HANDLED] * (len(BODIES) - 3)
    assert not [q["sql"] for q in queries.captured_queries if "SAVEPOINT" in q["sql"].upper()]
    assert queued_alerts() == expected_alerts(BODIES)


def test_a_pickled_message_is_still_quarantined_at_once_and_the_batch_goes_on():
    import pickle

    batch = envelopes(BODIES[:4])
    batch[1].payload = pickle.dumps({"detector_name": "detector-01"})
    batch[1].headers = [("_format", b"blob")]
    results = Ingestor({TOPIC: snews_observation_handler}).ingest(batch)
    assert [r.outcome for r in results] == [Outcome.HANDLED, Outcome.QUARANTINED, Outcome.HANDLED, Outcome.HANDLED]
    assert "pickle" in results[1].reason.lower()
    assert queued_alerts() == expected_alerts([b for i, b in enumerate(BODIES[:4]) if i != 1])


def test_a_database_error_in_a_batch_call_redoes_the_batch_one_by_one():

    from tom_mma_broker.models import ArchivedAlert

    calls = []

    def handler(alert, metadata):
        calls.append("one")

    def batch(messages):  # writes, then meets a database error: no savepoint of its own, the transaction is lost
        calls.append("batch")
        SnewsDeciderState.objects.create(name="once")
        SnewsDeciderState.objects.create(name="once")  # an IntegrityError

    handler.batch = batch
    results = Ingestor({TOPIC: handler}).ingest(envelopes(BODIES[:3]))
    assert calls == ["batch", "one", "one", "one"]
    assert [r.outcome for r in results] == [Outcome.HANDLED] * 3
    assert ArchivedAlert.objects.filter(status=ArchivedAlert.Status.HANDLED).count() == 3
    assert not SnewsDeciderState.objects.filter(name="once").exists()  # the batch call's writes rolled back
