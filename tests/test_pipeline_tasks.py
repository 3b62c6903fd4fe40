"""The broker's pipeline tasks: classification batched per candidate, the sweep, the outbox publisher's
transactions, retractions keyed on the event the alert cited."""

from __future__ import annotations

import json
import threading
import time
import uuid

import pytest
from django.db import OperationalError, connection, transaction

from tom_mma_broker.gw170817 import replay_messages
from tom_mma_broker.handlers import photometry_handler
from tom_mma_broker.ingest import Envelope, Ingestor
from tom_mma_broker.models import Candidate, CandidatePoint, OutboxMessage


def photometry(n: int, **changes) -> list[dict]:
    """The first ``n`` real AT2017gfo points (DECam g/r/i), optionally changed (another object)."""
    points = [dict(m.content) for m in replay_messages() if m.stream == "photometry"][:n]
    for i, point in enumerate(points):
        point.update(changes)
        if changes:
            point["point_id"] = f"{changes.get('object_name', 'x')}-{i}"
    return points


def envelopes(topic: str, points: list[dict]) -> list[Envelope]:
    return [
        Envelope(topic=topic, payload=json.dumps(p).encode(),
                 headers=[("_format", b"json"), ("_id", uuid.uuid4().bytes)], partition=0, offset=i)
        for i, p in enumerate(points)
    ]  # fmt: skip


def queued_tasks(redis_url: str) -> list[tuple[str, str]]:
    """(task name, argsrepr) of the messages waiting in Celery's default queue on Redis."""
    import redis

    messages = [json.loads(m) for m in redis.Redis.from_url(redis_url).lrange("celery", 0, -1)]
    return [(m["headers"]["task"], m["headers"]["argsrepr"]) for m in messages]


# -- 1. one classification per candidate and ingest transaction --------------------------------------------------
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_a_batch_of_points_queues_one_classification_per_candidate(celery_on_redis):
    topic = "phot.batch"
    handlers = {topic: photometry_handler}
    other = photometry(3, object_name="AT-other", aliases=[], ra=10.0, dec=10.0)
    batch = envelopes(topic, photometry(7) + other)
    with transaction.atomic():
        Ingestor(handlers).ingest(batch)
        assert queued_tasks(celery_on_redis) == []  # nothing before the commit
    gfo, second = Candidate.objects.get(name="AT2017gfo"), Candidate.objects.get(name="AT-other")
    assert CandidatePoint.objects.filter(candidate=gfo).count() == 7
    # the batch's candidates in one task, each once, in the order their points came
    expected = ("tom_mma_broker.tasks.classify_candidates", f"([{gfo.pk}, {second.pk}],)")
    assert queued_tasks(celery_on_redis) == [expected]


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_classifies_the_candidates_of_a_batch_in_one_task(celery_on_redis, tmp_path):
    from tests.conftest import start_worker, stop_worker
    from tom_mma_broker.models import Classification

    topic = "phot.worker"
    other = photometry(4, object_name="AT-worker", aliases=[], ra=20.0, dec=-5.0)
    worker = start_worker(tmp_path / "worker.log")
    try:
        with transaction.atomic():
            Ingestor({topic: photometry_handler}).ingest(envelopes(topic, photometry(6) + other))
        names = {"AT2017gfo", "AT-worker"}
        deadline = time.monotonic() + 90
        while Classification.objects.filter(candidate__name__in=names).count() < 2:
            assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()[-3000:]
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
            time.sleep(0.2)
    finally:
        stop_worker(worker)
    log = (tmp_path / "worker.log").read_text()
    assert log.count("tom_mma_broker.tasks.classify_candidates[") >= 1 and "classify_candidate[" not in log
    rows = Classification.objects.filter(candidate__name__in=names)
    assert sorted(rows.values_list("candidate__name", "n_points")) == [("AT-worker", 4), ("AT2017gfo", 6)]


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_point_does_not_swallow_the_candidates_classification(celery_on_redis):
    """The first point's savepoint rolls back (its callback with it): the next point queues the task."""
    first, second = photometry(2)
    with transaction.atomic():
        try:
            with transaction.atomic():
                photometry_handler(json.dumps(first).encode(), None)
                raise RuntimeError("the message's handling fails after the point was stored")
        except RuntimeError:
            pass
        photometry_handler(json.dumps(second).encode(), None)
        photometry_handler(json.dumps(second).encode(), None)  # a repeat: nothing new
    gfo = Candidate.objects.get(name="AT2017gfo")
    assert CandidatePoint.objects.filter(candidate=gfo).count() == 1
    assert queued_tasks(celery_on_redis) == [("tom_mma_broker.tasks.classify_candidate", f"({gfo.pk},)")]


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_each_transaction_queues_its_own_classification(celery_on_redis):
    topic = "phot.two"
    handlers = {topic: photometry_handler}
    points = photometry(4)
    Ingestor(handlers).ingest(envelopes(topic, points[:2]))
    Ingestor(handlers).ingest(envelopes(topic, points[2:]))
    pk = Candidate.objects.get().pk
    assert queued_tasks(celery_on_redis) == [("tom_mma_broker.tasks.classify_candidate", f"({pk},)")] * 2


# -- 4. the sweep re-enqueues only what the classifier can classify -------------------------------------------
def _candidate_with(name: str, points: list[tuple[str, bool]]) -> Candidate:
    candidate = Candidate.objects.create(name=name, ra=0.0, dec=0.0)
    for i, (band, upper) in enumerate(points):
        CandidatePoint.objects.create(candidate=candidate, point_id=f"{name}-{i}", mjd=60000.0 + i, band=band,
                                      magnitude=20.0, upper_limit=upper)  # fmt: skip
    return candidate


@pytest.mark.django_db
def test_the_sweep_skips_candidates_the_classifier_cannot_classify():
    from tom_mma_broker.classification import unclassified_candidates
    from tom_mma_broker.tasks import sweep

    _candidate_with("only-uv", [("UVW1", False), ("w", False), ("g", True)])  # NoDetectionsError: UV, unfiltered
    ztf = _candidate_with("ztf-r", [("ZTF_r", False), ("ztfg", False)])
    assert list(unclassified_candidates()) == [ztf]
    assert sweep()["classify"] == 1  # eager here: ztf-r is classified now
    assert ztf.classifications.count() == 1
    # a second sweep has nothing left to do, however often it runs
    assert list(unclassified_candidates()) == []
    assert sweep()["classify"] == 0


# -- 3. the outbox publisher holds no transaction while it waits on Kafka ------------------------------------
class _Probe:
    """Wraps the real producer: while the publisher waits on the broker, another connection writes."""

    def __init__(self, producer, pks):
        self.producer, self.pks, self.outcome = producer, pks, None

    def __getattr__(self, name):
        return getattr(self.producer, name)

    def _write_elsewhere(self) -> None:
        try:
            with transaction.atomic():
                # PostgreSQL: fails at once if the publisher holds these rows; SQLite: the publisher's open
                # IMMEDIATE transaction holds the write lock, and this write times out ("database is locked")
                list(OutboxMessage.objects.select_for_update(nowait=True).filter(pk__in=self.pks))
                OutboxMessage.objects.filter(pk__in=self.pks).update(last_error="")
            self.outcome = "written"
        except OperationalError as exc:
            self.outcome = f"blocked: {exc}"
        finally:
            connection.close()

    def flush(self, *args, **kwargs):
        thread = threading.Thread(target=self._write_elsewhere)
        thread.start()
        thread.join(60)
        return self.producer.flush(*args, **kwargs)


@pytest.mark.kafka
@pytest.mark.django_db(transaction=True)
def test_the_publisher_sends_outside_any_transaction(kafka_broker, topic, settings, monkeypatch):
    from tom_mma_broker import publishing

    settings.TOM_MMA_BROKER = {**settings.TOM_MMA_BROKER, "KAFKA_URL": kafka_broker.url}
    rows = [OutboxMessage.objects.create(alert_id=uuid.uuid4(), topic=topic, payload=b'{"n": %d}' % i)
            for i in range(3)]  # fmt: skip
    probes = []
    real_open = publishing.open_producer

    def open_producer(*args, **kwargs):
        probes.append(_Probe(real_open(*args, **kwargs), [r.pk for r in rows]))
        return probes[-1]

    monkeypatch.setattr(publishing, "open_producer", open_producer)
    monkeypatch.setattr(publishing, "_producers", {})  # not one an earlier test left to this thread
    assert publishing.publish_pending(timeout=20) == 3
    assert [p.outcome for p in probes] == ["written"]
    assert not OutboxMessage.objects.filter(sent_at__isnull=True).exists()
    assert all(r.attempts == 1 for r in OutboxMessage.objects.all())


# -- 3. retractions follow the event the alert cited, not the candidate's current one -------------------------
@pytest.mark.django_db
def test_retractions_follow_the_event_recorded_in_the_alert(settings):
    from tom_mma_broker.classification import score_candidate
    from tom_mma_broker.outbox import queue_retractions

    settings.TOM_MMA_BROKER = {**settings.TOM_MMA_BROKER, "PUBLISH_ENABLED": True, "PUBLISH_FLOOR": 0.0}
    candidate = _candidate_with("AT-cited", [("g", False), ("r", False)])
    candidate.gw_event = "MS1"
    candidate.save()
    classification = score_candidate(candidate.pk)
    original = OutboxMessage.objects.get(classification=classification)
    assert json.loads(bytes(original.payload))["gw_event"] == "MS1"
    # the candidate is later associated with another event: the alert still cited MS1
    Candidate.objects.filter(pk=candidate.pk).update(gw_event="MS2")
    assert queue_retractions("MS2", "retracted") == 0
    assert queue_retractions("MS1", "retracted") == 1
    retraction = OutboxMessage.objects.get(kind="retraction")
    assert json.loads(bytes(retraction.payload))["retracts"] == str(original.alert_id)
    assert queue_retractions("MS1", "retracted") == 0  # idempotent
