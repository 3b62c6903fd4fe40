"""The GW170817 pipeline end to end, over the real embedded broker, a real Celery worker on Redis, and the
test database (PostgreSQL in CI's first pass, SQLite in its second)."""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import start_worker, stop_worker
from tom_mma_broker import demo
from tom_mma_broker.embedded import EmbeddedKafka, create_topics
from tom_mma_broker.models import ArchivedAlert, Candidate, CandidatePoint, Classification, OutboxMessage
from tom_mma_broker.streams import ReliableHopskotchAlertStream

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.kafka, pytest.mark.django_db(transaction=True)]


def handlers_for(topics: dict[str, str]) -> dict[str, str]:
    return {
        topics["gw"]: "tom_mma.handlers.lvk.igwn_gwalert_handler",
        topics["photometry"]: "tom_mma_broker.handlers.photometry_handler",
        topics["results"]: "tom_mma.handlers.derived.derived_alert_handler",
    }


@pytest.fixture
def topics(kafka_broker, settings) -> dict[str, str]:
    suffix = uuid.uuid4().hex[:8]
    names = {"gw": f"gw.{suffix}", "photometry": f"phot.{suffix}", "results": f"derived.{suffix}"}
    create_topics(kafka_broker.bootstrap, names.values())
    settings.TOM_MMA_BROKER = {**settings.TOM_MMA_BROKER, "RESULTS_TOPIC": names["results"]}
    settings.TOM_MMA = {**getattr(settings, "TOM_MMA", {}), "ACCEPT_MOCK_EVENTS": True}
    return names


@pytest.fixture
def celery_worker(topics, celery_on_redis, tmp_path):
    """A real Celery worker on Redis; this process's tasks go there too."""
    proc = start_worker(tmp_path / "worker.log", TOM_MMA_TEST_RESULTS_TOPIC=topics["results"])
    yield proc
    stop_worker(proc)


def run_flow(broker, topics, worker) -> list[uuid.UUID]:
    stream = ReliableHopskotchAlertStream(
        URL=broker.url,
        GROUP_ID=f"e2e-{uuid.uuid4().hex[:6]}",
        START_POSITION="EARLIEST",
        TOPIC_HANDLERS=handlers_for(topics),
    )
    thread = threading.Thread(target=stream.listen, daemon=True)
    thread.start()
    try:
        ids = demo.run_replay(broker, speed=0, topics=topics)
        settled = demo.wait_until(lambda: demo.pipeline_settled(ids), 120)
        assert worker.poll() is None, "the Celery worker died"
        if not settled:
            from hop import Stream
            from hop.io import StartPosition

            c = Stream(auth=False, start_at=StartPosition.EARLIEST, until_eos=True).open(
                f"{broker.url}/{topics['results']}", "r"
            )
            n = sum(1 for _ in c.read())
            c.close()
            raise AssertionError(
                f"{demo.summary().lines()} results topic holds {n}; stats {stream.stats}; alive {thread.is_alive()}"
            )
    finally:
        stream.stop()
        thread.join(20)
    return ids


def snapshot() -> dict[str, int]:
    from tom_dataproducts.models import PhotometryReducedDatum
    from tom_observations.models import ObservationRecord
    from tom_targets.models import Target

    from tom_mma.models.derived import DerivedAlertRecord
    from tom_mma.models.gw import GWEvent

    return {
        "archive": ArchivedAlert.objects.count(),
        "candidates": Candidate.objects.count(),
        "points": CandidatePoint.objects.count(),
        "classifications": Classification.objects.count(),
        "outbox": OutboxMessage.objects.count(),
        "derived": DerivedAlertRecord.objects.count(),
        "targets": Target.objects.count(),
        "photometry": PhotometryReducedDatum.objects.count(),
        "requests": ObservationRecord.objects.count(),
        "events": GWEvent.objects.count(),
    }


@pytest.mark.slow
@pytest.mark.redis
def test_gw170817_end_to_end_then_replayed_again_adds_nothing(kafka_broker, topics, celery_worker, caplog):
    from tom_dataproducts.models import PhotometryReducedDatum
    from tom_observations.models import ObservationRecord
    from tom_targets.models import Target

    from tom_mma.models import ObservationTrigger
    from tom_mma.models.derived import DerivedAlertRecord
    from tom_mma.models.gw import GWEvent

    caplog.set_level(logging.ERROR, logger="django.db.backends.base")
    ids = run_flow(kafka_broker, topics, celery_worker)
    first = snapshot()
    # enqueues on commit are robust (logged, not raised): none may have failed
    assert not [r.getMessage() for r in caplog.records if "on_commit" in r.getMessage()]

    event = GWEvent.objects.get(superevent_id="MS170817a")
    assert event.kind == "mock" and event.state == "active"
    candidate = Candidate.objects.get()
    assert candidate.name == "AT2017gfo" and candidate.gw_event == "MS170817a"
    assert candidate.points.count() == 25  # the DECam g/r/i points
    # classifications are batched per candidate (points that arrive together are scored together); the
    # last one covers every point; each keeps its model version and features
    classifications = list(candidate.classifications.order_by("n_points"))
    assert classifications and classifications[-1].n_points == 25
    assert all(c.model_version.startswith("kilonova-v2.1+") and c.features for c in classifications)
    assert len({c.input_digest for c in classifications}) == len(classifications)
    assert classifications[-1].score > 0.9  # AT2017gfo, never in the training set
    # the derived alerts came back through Kafka to the TOM
    sent = OutboxMessage.objects.filter(sent_at__isnull=False)
    assert sent.count() == OutboxMessage.objects.count() > 0
    records = DerivedAlertRecord.objects.filter(kind="classification")
    assert set(records.values_list("alert_id", flat=True)) == set(sent.values_list("alert_id", flat=True))
    assert {str(m) for m in candidate.points.values_list("message_id", flat=True)} <= {str(i) for i in ids}
    # AT2017gfo stands as a Target with its light curve, score history and one observation request
    target = Target.objects.get(name="AT2017gfo")
    assert PhotometryReducedDatum.objects.filter(target=target).count() == 25
    assert records.filter(target=target).count() == sent.count()
    requests = ObservationRecord.objects.filter(target=target)
    assert requests.count() == 1 and requests.get().facility == "Simulated"
    # requested because AT2017gfo lies inside the 90% region of the event's sky map, not on its score alone
    trigger = ObservationTrigger.objects.get(target=target)
    assert trigger.status == "submitted" and list(trigger.observation_records.all()) == [requests.get()]
    assert trigger.details["region"] == "inside", trigger.details
    assert trigger.details["gw_event"] == "MS170817a"
    assert trigger.details["credible_level"] <= trigger.details["credible_level_limit"] == 0.9

    # the same replay again: nothing anywhere doubles
    run_flow(kafka_broker, topics, celery_worker)
    assert snapshot() == first


@pytest.mark.slow
def test_publish_pending_on_a_stopped_broker_keeps_messages_queued_then_sends_each_once(tmp_path, settings):
    """The publisher function alone: SIGSTOP its broker during publication, resume it: each message sent once."""
    from hop import Stream
    from hop.io import StartPosition

    from tom_mma_broker.publishing import PublishIncomplete, publish_pending

    broker = EmbeddedKafka(tmp_path / "own")
    info = broker.start(["sigstop.derived"])
    settings.TOM_MMA_BROKER = {**settings.TOM_MMA_BROKER, "KAFKA_URL": info.url, "RESULTS_TOPIC": "sigstop.derived"}
    try:
        rows = [OutboxMessage.objects.create(alert_id=uuid.uuid4(), topic="sigstop.derived",
                                             payload=json.dumps({"n": i}).encode()) for i in range(40)]  # fmt: skip
        # stopped longer than the publisher waits: nothing is marked sent, nothing is lost
        info_pid = info.pid
        import os

        os.kill(info_pid, signal.SIGSTOP)
        try:
            with pytest.raises(PublishIncomplete):
                publish_pending(timeout=2)
        finally:
            os.kill(info_pid, signal.SIGCONT)
        assert OutboxMessage.objects.filter(sent_at__isnull=True).count() == 40
        assert all(r.attempts == 1 for r in OutboxMessage.objects.all())

        # stopped during a publication that outlasts the stop: delivered when it resumes
        os.kill(info_pid, signal.SIGSTOP)
        timer = threading.Timer(2.0, os.kill, (info_pid, signal.SIGCONT))
        timer.start()
        assert publish_pending(timeout=20) == 40
        timer.join()
        assert OutboxMessage.objects.filter(sent_at__isnull=True).count() == 0

        consumer = Stream(auth=False, start_at=StartPosition.EARLIEST, until_eos=True).open(
            f"{info.url}/sigstop.derived", "r"
        )
        seen = [str(uuid.UUID(bytes=dict(m.headers)["_id"])) for _, m in consumer.read(metadata=True)]
        consumer.close()
        expected = {str(r.alert_id) for r in rows}
        assert set(seen) == expected
        # the first, timed-out attempt was not re-sent behind our back; the second sent each once
        assert len(seen) == len(expected)
    finally:
        broker.stop()


def wait_for(predicate, timeout: float, what: str, worker=None, log=None) -> None:
    """Poll ``predicate`` (0.2 s) for at most ``timeout`` s; fail saying ``what`` did not happen."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if worker is not None and worker.poll() is not None:
            raise AssertionError(f"the Celery worker died while waiting for {what}: {log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s; {demo.summary().lines()}")
        time.sleep(0.2)


def publish_replay(broker, topics, messages) -> list[uuid.UUID]:
    from tom_mma_broker.gw170817.replay import publish
    from tom_mma_broker.kafka import open_producer

    with open_producer(broker.url) as producer:
        ids = publish(messages, producer, topics, speed=0)
        producer.flush()
    return ids


@pytest.mark.slow
@pytest.mark.redis
def test_broker_stopped_while_the_publisher_task_sends_every_derived_alert_arrives_once(
    kafka_broker, topics, celery_on_redis, tmp_path
):
    """The real flow; SIGSTOP the broker while the Celery publisher sends a derived alert; SIGCONT it.

    First half of the light curve: the pipeline runs to its end (a derived alert reaches the TOM). Then, with
    no worker running, the second half is ingested; the broker is stopped; a worker starts, classifies and
    runs ``publish_outbox``, which claims the new alert and waits on the stopped broker. The broker resumes:
    every derived alert of the outbox is in the TOM, once.
    """
    from tom_mma.models import ObservationTrigger
    from tom_mma.models.derived import DerivedAlertRecord
    from tom_mma_broker.gw170817 import replay_messages

    messages = replay_messages()
    photometry = [m for m in messages if m.stream == "photometry"]
    first, second = messages[: len(messages) - 10], photometry[-10:]
    stream = ReliableHopskotchAlertStream(URL=kafka_broker.url, GROUP_ID=f"sigstop-{uuid.uuid4().hex[:6]}",
                                          START_POSITION="EARLIEST", TOPIC_HANDLERS=handlers_for(topics))  # fmt: skip
    thread = threading.Thread(target=stream.listen, daemon=True)
    thread.start()
    log = tmp_path / "worker.log"
    worker = start_worker(log, TOM_MMA_TEST_RESULTS_TOPIC=topics["results"])
    stopped = False
    try:
        ids = publish_replay(kafka_broker, topics, first)
        wait_for(lambda: demo.pipeline_settled(ids) and DerivedAlertRecord.objects.exists(), 120,
                 "the first half of the light curve through the pipeline", worker, log)  # fmt: skip
        before = set(OutboxMessage.objects.values_list("alert_id", flat=True))
        stop_worker(worker)

        ids += publish_replay(kafka_broker, topics, second)
        wait_for(lambda: CandidatePoint.objects.count() == 25, 60, "the second half ingested")
        assert not OutboxMessage.objects.exclude(alert_id__in=before).exists()  # no worker: not classified yet

        os.kill(kafka_broker.pid, signal.SIGSTOP)
        stopped = True
        worker = start_worker(log, TOM_MMA_TEST_RESULTS_TOPIC=topics["results"])
        # the publisher task has claimed the new derived alert and cannot deliver it
        wait_for(lambda: OutboxMessage.objects.exclude(alert_id__in=before).filter(attempts__gte=1).exists(), 120,
                 "the Celery publisher claiming the new derived alert on the stopped broker", worker, log)  # fmt: skip
        assert OutboxMessage.objects.exclude(alert_id__in=before).filter(sent_at__isnull=True).exists()
        os.kill(kafka_broker.pid, signal.SIGCONT)
        stopped = False

        wait_for(lambda: demo.pipeline_settled(ids), 180, "every derived alert in the TOM after the broker resumed",
                 worker, log)  # fmt: skip
    finally:
        if stopped:
            os.kill(kafka_broker.pid, signal.SIGCONT)
        stream.stop()
        thread.join(20)
        stop_worker(worker)

    outbox = list(OutboxMessage.objects.values_list("alert_id", flat=True))
    assert len(outbox) >= 2 and set(outbox) > before
    assert not OutboxMessage.objects.filter(sent_at__isnull=True).exists()
    received = list(DerivedAlertRecord.objects.values_list("alert_id", flat=True))
    assert sorted(received) == sorted(outbox)  # one to one: each derived alert arrived, and once
    assert ObservationTrigger.objects.count() == 1


def test_the_publisher_keeps_its_producer_between_calls_and_through_a_stalled_broker(tmp_path, settings):
    # an idempotent producer's first message waits ~0.5 s for its producer id: one producer per process; a
    # broker that stalls past the wait keeps the producer (it retries, deduplicated by the broker) and the row
    # held, so that nothing is sent twice
    from hop import Stream
    from hop.io import StartPosition

    from tom_mma_broker import publishing

    broker = EmbeddedKafka(tmp_path / "own")
    info = broker.start(["reuse.derived"])
    settings.TOM_MMA_BROKER = {**settings.TOM_MMA_BROKER, "KAFKA_URL": info.url, "RESULTS_TOPIC": "reuse.derived"}

    def queue(n: int) -> list[OutboxMessage]:
        return [OutboxMessage.objects.create(alert_id=uuid.uuid4(), topic="reuse.derived", payload=b'{"n": %d}' % i)
                for i in range(n)]  # fmt: skip

    try:
        queue(2)
        assert publishing.publish_pending(timeout=10) == 2
        [(_, first)] = publishing._producers.values()
        queue(3)
        assert publishing.publish_pending(timeout=5) == 3  # another timeout: the same producer
        assert [p for _, p in publishing._producers.values()] == [first]
        os.kill(info.pid, signal.SIGSTOP)
        try:
            [stalled] = queue(1)
            with pytest.raises(publishing.PublishIncomplete):
                publishing.publish_pending(timeout=1)
            stalled.refresh_from_db()
            assert stalled.sent_at is None and stalled.claimed_until is not None  # held by this producer
            assert "not acknowledged within 1 s" in stalled.last_error
            assert publishing._claim(10, 60) == []  # nobody else takes it meanwhile
        finally:
            os.kill(info.pid, signal.SIGCONT)
        assert publishing.publish_pending(timeout=10) == 1  # the late acknowledgement, recorded
        assert [p for _, p in publishing._producers.values()] == [first]
        stalled.refresh_from_db()
        assert stalled.sent_at is not None and stalled.claimed_until is None and stalled.attempts == 1
        consumer = Stream(auth=False, start_at=StartPosition.EARLIEST, until_eos=True).open(
            f"{info.url}/reuse.derived", "r"
        )
        seen = [uuid.UUID(bytes=dict(m.headers)["_id"]) for _, m in consumer.read(metadata=True)]
        consumer.close()
        assert len(seen) == 6 and set(seen) == set(OutboxMessage.objects.values_list("alert_id", flat=True))
    finally:
        publishing._discard_producer()
        broker.stop()


def test_warm_up_builds_the_kafka_producer_that_the_next_publication_uses(kafka_broker, settings):
    # a worker warms up at start, so that its first alert does not wait for the idempotent producer's id
    from tom_mma_broker import publishing

    settings.TOM_MMA_BROKER = {**settings.TOM_MMA_BROKER, "KAFKA_URL": kafka_broker.url,
                               "SNEWS_ALERT_TOPIC": "warm.snews"}  # fmt: skip
    create_topics(kafka_broker.bootstrap, ["warm.snews", "warm.derived"])
    try:
        publishing.warm_up(timeout=10)
        [(_, warm)] = publishing._producers.values()
        [record] = warm.producers.values()  # hop built its Kafka producer already (else at the first message)
        OutboxMessage.objects.create(alert_id=uuid.uuid4(), topic="warm.derived", payload=b'{"n": 1}')
        assert publishing.publish_pending(timeout=10) == 1
        assert [p for _, p in publishing._producers.values()] == [warm]
        assert list(warm.producers.values()) == [record]  # the same one sent it
    finally:
        publishing._discard_producer()


def test_a_thread_that_drops_its_producer_leaves_the_other_threads_alone(kafka_broker, settings):
    # the demo publishes from its stream thread and its main thread: one's failure must not purge the other's
    from tom_mma_broker import publishing

    settings.TOM_MMA_BROKER = {**settings.TOM_MMA_BROKER, "KAFKA_URL": kafka_broker.url}
    made = {}
    other = threading.Thread(target=lambda: made.setdefault("other", publishing._producer(5)))
    other.start()
    other.join()
    mine = publishing._producer(5)
    try:
        assert mine is not made["other"]
        publishing._discard_producer()  # this thread's only
        assert [p for _, p in publishing._producers.values()] == [made["other"]]
    finally:
        publishing._producers.clear()
