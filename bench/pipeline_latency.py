"""End-to-end latency and throughput of the kilonova pipeline, as a production TOM runs it.

Processes: ``readstreams`` (the reliable stream: archive, photometry handler, derived-alert handler), a
Celery worker on Redis (classification, outbox publication), PostgreSQL, the embedded Kafka broker.

* Latency: the GW170817 replay, one photometry message at a time (``--gap`` s apart). For every derived
  alert the broker made, the time from its latest point's message entering the source topic to the TOM
  storing the alert (p50, p99, max; the database's own timestamps, so nothing depends on when the bench
  polls). For each candidate, the time to its first observation request, from its first point and from the
  point whose alert triggered it (the request may come later, e.g. when the sky map arrives: the bench
  waits for every claimed request, bounded by ``--latency-timeout``).
* Throughput: ``--candidates`` x ``--points`` synthetic photometry messages (fading transients) published at
  once; messages/s until every candidate is classified and every derived alert is in the TOM. Reported
  only when that completed within ``--throughput-timeout``.

Each part and the whole say ``completed``: false means a bounded wait timed out and the figures are partial.

Peer: none exists for this flow in the TOM ecosystem; the latency goal (p99 < 2 s) is absolute.
The last line printed is one JSON object.

    python bench/pipeline_latency.py [--candidates 1000 --points 10 --gap 0.5 --redis-url redis://...]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from benchstats import percentile  # bench/ is on sys.path when a benchmark runs as a script

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN = "postgres://postgres@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379/11"
TOPICS = {"gw": "tom-mma.gw170817.gwalert", "photometry": "tom-mma.gw170817.photometry",
          "results": "tom-mma.gw170817.derived"}  # fmt: skip


def synthetic_points(candidates: int, points: int, seed: int = 1):
    from tom_mma_broker.schemas.photometry import PhotometryMessage

    rng = random.Random(seed)
    out = []
    for c in range(candidates):
        ra, dec = rng.uniform(0, 360), rng.uniform(-60, 60)
        t0, m0, rate = 60000 + rng.uniform(0, 5), rng.uniform(17, 20), rng.uniform(0.05, 1.0)
        for p in range(points):
            band = "gri"[p % 3]
            t = t0 + p * 0.5
            out.append(PhotometryMessage.create(
                object_name=f"SYN{c:05d}", ra=ra, dec=dec, mjd=t, band=band,
                magnitude=m0 + rate * (t - t0) + rng.gauss(0, 0.05), magnitude_error=0.05,
                source="bench", telescope="bench", instrument="bench", gw_event=None,
            ))  # fmt: skip
    rng.shuffle(out)
    out.sort(key=lambda p: p.mjd)
    return out


def wait_for(predicate, timeout: float, interval: float = 0.1) -> bool:
    """Poll ``predicate`` until it holds (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def _seconds(when, since: float | None) -> float | None:
    return None if since is None else round(when.timestamp() - since, 3)


def latency_figures(sent_at: dict[float, float], names: list[str], timeout: float) -> dict:
    """Latency of every derived alert of ``names`` and each candidate's time to its first observation request.

    Times are the database's own: ``DerivedAlertRecord.received`` (set when the TOM stores the alert) and
    ``ObservationRecord.created``, against the wall-clock time each source message was sent (``sent_at``,
    by MJD of the point). Waits (bounded) until every derived alert the broker made is in the TOM and the
    requests the rules claimed are made; says whether that completed.
    """
    from tom_observations.models import ObservationRecord

    from tom_mma.models import ObservationTrigger
    from tom_mma.models.derived import DerivedAlertRecord
    from tom_mma_broker.models import OutboxMessage

    def made() -> set:
        return set(OutboxMessage.objects.filter(kind="classification", classification__candidate__name__in=names)
                   .values_list("alert_id", flat=True))  # fmt: skip

    def arrived() -> bool:
        ids = made()
        return DerivedAlertRecord.objects.filter(alert_id__in=ids).count() == len(ids)

    def requested() -> bool:  # every trigger claimed has left "pending"/"submitting"
        return not ObservationTrigger.objects.filter(status__in=["pending", "submitting"]).exists()

    alerts_complete = wait_for(arrived, timeout)
    requests_complete = wait_for(requested, timeout)
    latencies = []
    for record in DerivedAlertRecord.objects.filter(alert_id__in=made()):
        sent = sent_at.get(record.latest_point_mjd)
        if sent is not None:
            latencies.append(record.received.timestamp() - sent)
    first_point = min(sent_at.values()) if sent_at else None
    to_request = {}
    for name in names:
        record = ObservationRecord.objects.filter(target__name=name).order_by("created").first()
        if record is None or first_point is None:
            to_request[name] = None
            continue
        trigger = ObservationTrigger.objects.filter(target__name=name).select_related("alert").first()
        point_sent = sent_at.get(trigger.alert.latest_point_mjd) if trigger and trigger.alert else None
        to_request[name] = {
            "from_first_point_s": round(record.created.timestamp() - first_point, 3),
            "from_triggering_point_s": None
            if point_sent is None
            else round(record.created.timestamp() - point_sent, 3),
            "region": trigger.details.get("region") if trigger else None,
        }
    return {
        "completed": alerts_complete and requests_complete,
        "derived_alerts_made": len(made()),
        "latency_samples": len(latencies),
        "p50_s": round(percentile(latencies, 0.5), 3) if latencies else None,
        "p99_s": round(percentile(latencies, 0.99), 3) if latencies else None,
        "max_s": round(max(latencies), 3) if latencies else None,
        "first_observation_request": to_request,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--candidates", type=int, default=1000)
    parser.add_argument("--points", type=int, default=10)
    parser.add_argument("--gap", type=float, default=0.5, help="seconds between replay messages")
    parser.add_argument(
        "--latency-timeout",
        type=float,
        default=120.0,
        help="seconds to wait for the replay's derived alerts and requests after the last message",
    )
    parser.add_argument(
        "--throughput-timeout",
        type=float,
        default=1800.0,
        help="seconds to wait for the synthetic batch to be classified and received",
    )
    parser.add_argument("--redis-url", default=REDIS_URL, help=f"Celery broker (default {REDIS_URL}; emptied)")
    parser.add_argument("--workers", type=int, default=1, help="Celery worker processes (solo pool each; 1)")
    parser.add_argument("--readstreams", type=int, default=1,
                        help="readstreams processes in one group sharing the partitions (1)")  # fmt: skip
    parser.add_argument("--partitions", type=int, default=4, help="partitions of the topics (4)")
    parser.add_argument("--skip-latency", action="store_true", help="the throughput run only")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="tom-mma-pipeline-"))
    db = f"tom_mma_pipe_{uuid.uuid4().hex[:8]}"
    subprocess.run(["psql", PG_ADMIN, "-qc", f"CREATE DATABASE {db}"], check=True)
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="example_tom.settings", PYTHONPATH=str(ROOT),
               DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{db}", CELERY_BROKER_URL=args.redis_url,
               TOM_MMA_STATE_DIR=str(tmp / "state"), TOM_MMA_LOG_LEVEL="WARNING", DJANGO_DEBUG="0",
               TOM_MMA_SHARE_PARTITIONS="1")  # fmt: skip
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    import redis
    from django.core.management import call_command

    from example_tom.celery import app
    from tom_mma_broker.kafka import embedded_broker, hop_headers, open_producer

    app.conf.update(broker_url=args.redis_url, task_always_eager=False)
    redis.Redis.from_url(args.redis_url).flushdb()
    call_command("migrate", verbosity=0)
    from django.conf import settings

    settings.TOM_MMA_BROKER = {**settings.TOM_MMA_BROKER, "EMBEDDED_PARTITIONS": args.partitions}
    broker = embedded_broker()
    info = broker.start(TOPICS.values())
    procs = [subprocess.Popen([sys.executable, "manage.py", "readstreams"], cwd=ROOT, env=env)
             for _ in range(args.readstreams)]  # fmt: skip
    procs += [
        subprocess.Popen([sys.executable, "-m", "celery", "-A", "example_tom", "worker", "--pool=solo",
                          "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "warning",
                          "-n", f"bench{n}@%h"], cwd=ROOT, env=env)
        for n in range(args.workers)
    ]  # fmt: skip
    figures: dict = {}
    try:
        from tom_mma.models.derived import DerivedAlertRecord
        from tom_mma_broker.gw170817 import publish, replay_messages
        from tom_mma_broker.models import Candidate, Classification

        time.sleep(3 + 6 * (args.readstreams > 1))  # let the consumers join (a group of several: a rebalance)
        # latency: the replay, one message at a time; the send time of each point, by its MJD
        sent_at: dict[float, float] = {}
        messages = [] if args.skip_latency else replay_messages()
        with open_producer(info.url) as producer:
            for message in messages:
                started = time.monotonic()
                if message.stream == "photometry":
                    sent_at[message.content["mjd"]] = time.time()
                publish([message], producer, TOPICS, speed=0)
                producer.flush()
                pause = 1.0 if message.stream != "photometry" else args.gap
                time.sleep(max(0.0, pause - (time.monotonic() - started)))
        names = sorted({m.content["object_name"] for m in messages if m.stream == "photometry"})
        figures["latency"] = (
            {"completed": True, "skipped": True}
            if args.skip_latency
            else latency_figures(sent_at, names, args.latency_timeout)
        )

        # throughput
        points = synthetic_points(args.candidates, args.points)
        t0 = time.monotonic()
        with open_producer(info.url) as producer:
            for p in points:
                _, headers = hop_headers("json")
                producer.write_raw(p.to_json() if hasattr(p, "to_json") else json.dumps(p.to_dict()).encode(),
                                   headers, topic=TOPICS["photometry"], key=p.point_id)  # fmt: skip
            producer.flush()
        published = time.monotonic() - t0
        from tom_mma_broker.classification import unclassified_candidates
        from tom_mma_broker.models import OutboxMessage

        def throughput_done() -> bool:
            if Candidate.objects.filter(name__startswith="SYN").count() < args.candidates:
                return False
            if unclassified_candidates().filter(name__startswith="SYN").exists():
                return False
            if OutboxMessage.objects.filter(sent_at__isnull=True).exists():
                return False
            sent_ids = set(OutboxMessage.objects.values_list("alert_id", flat=True))
            return DerivedAlertRecord.objects.filter(alert_id__in=sent_ids).count() == len(sent_ids)

        completed = wait_for(throughput_done, args.throughput_timeout, interval=0.5)
        elapsed = time.monotonic() - t0
        figures["throughput"] = {
            "completed": completed,
            "messages": len(points),
            "candidates": args.candidates,
            # a rate only for a run that finished: a timed-out run processed an unknown part of the messages
            "messages_per_s": round(len(points) / elapsed, 1) if completed else None,
            "elapsed_s": round(elapsed, 2),
            "publish_s": round(published, 2),
            "candidates_seen": Candidate.objects.filter(name__startswith="SYN").count(),
            "classifications": Classification.objects.filter(candidate__name__startswith="SYN").count(),
            "derived_alerts": DerivedAlertRecord.objects.count(),
        }
        figures["completed"] = figures["latency"]["completed"] and completed
        figures["setup"] = (f"{args.readstreams} readstreams (one group, shared partitions) + {args.workers} "
                            f"celery worker(s) (solo) on Redis, PostgreSQL, embedded Kafka, {args.partitions} "
                            "partitions")  # fmt: skip
        figures["workers"], figures["readstreams"] = args.workers, args.readstreams
        figures["messages_per_s"] = figures["throughput"]["messages_per_s"]
    finally:
        figures.setdefault("completed", False)
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        broker.stop()
        from django.db import connections

        connections.close_all()
        subprocess.run(["psql", PG_ADMIN, "-qc", f"DROP DATABASE IF EXISTS {db}"], check=False)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
