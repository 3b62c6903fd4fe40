"""End-to-end latency and throughput of the kilonova pipeline, as a production TOM runs it.

Processes: ``readstreams`` (the reliable stream: archive, photometry handler, derived-alert handler), a
Celery worker on Redis (classification, outbox publication), PostgreSQL, the embedded Kafka broker.

* Latency: the GW170817 replay, one photometry message at a time (0.5 s apart); for each point whose
  classification yields a derived alert, the time from the message entering the source topic to the TOM
  holding that alert on the Target's score history, and, for the point that triggers it, the observation
  request. p50 and p99.
* Throughput: 10,000 synthetic photometry messages for 1,000 candidates (fading transients, 10 points each)
  published at once; messages/s until every candidate is classified and every derived alert is in the TOM.

Peer: none exists for this flow in the TOM ecosystem; the latency goal (p99 < 2 s) is absolute.
The last line printed is one JSON object.

    python bench/pipeline_latency.py [--candidates 1000 --points 10]
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

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN = "postgres://postgres@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379/11"
TOPICS = {"gw": "tom-mma.gw170817.gwalert", "photometry": "tom-mma.gw170817.photometry",
          "results": "tom-mma.gw170817.derived"}  # fmt: skip


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def synthetic_points(candidates: int, points: int, seed: int = 1):
    from tom_mma_broker.schemas.photometry import PhotometryPoint

    rng = random.Random(seed)
    out = []
    for c in range(candidates):
        ra, dec = rng.uniform(0, 360), rng.uniform(-60, 60)
        t0, m0, rate = 60000 + rng.uniform(0, 5), rng.uniform(17, 20), rng.uniform(0.05, 1.0)
        for p in range(points):
            band = "gri"[p % 3]
            t = t0 + p * 0.5
            out.append(PhotometryPoint.create(
                object_name=f"SYN{c:05d}", ra=ra, dec=dec, mjd=t, band=band,
                magnitude=m0 + rate * (t - t0) + rng.gauss(0, 0.05), magnitude_error=0.05,
                source="bench", telescope="bench", instrument="bench", gw_event=None,
            ))  # fmt: skip
    rng.shuffle(out)
    out.sort(key=lambda p: p.mjd)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--candidates", type=int, default=1000)
    parser.add_argument("--points", type=int, default=10)
    parser.add_argument("--gap", type=float, default=0.5, help="seconds between replay messages")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="tom-mma-pipeline-"))
    db = f"tom_mma_pipe_{uuid.uuid4().hex[:8]}"
    subprocess.run(["psql", PG_ADMIN, "-qc", f"CREATE DATABASE {db}"], check=True)
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="example_tom.settings", PYTHONPATH=str(ROOT),
               DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{db}", CELERY_BROKER_URL=REDIS_URL,
               TOM_MMA_STATE_DIR=str(tmp / "state"), TOM_MMA_LOG_LEVEL="WARNING", DJANGO_DEBUG="0")  # fmt: skip
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    import redis
    from django.core.management import call_command

    from example_tom.celery import app
    from tom_mma_broker.kafka import embedded_broker, hop_headers, open_producer

    app.conf.update(broker_url=REDIS_URL, task_always_eager=False)
    redis.Redis.from_url(REDIS_URL).flushdb()
    call_command("migrate", verbosity=0)
    broker = embedded_broker()
    info = broker.start(TOPICS.values())
    procs = [
        subprocess.Popen([sys.executable, "manage.py", "readstreams"], cwd=ROOT, env=env),
        subprocess.Popen([sys.executable, "-m", "celery", "-A", "example_tom", "worker", "--pool=solo",
                          "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "warning"],
                         cwd=ROOT, env=env),
    ]  # fmt: skip
    try:
        from tom_observations.models import ObservationRecord

        from tom_mma.models.derived import DerivedAlertRecord
        from tom_mma_broker.demo import replay_message_id
        from tom_mma_broker.gw170817 import replay_messages
        from tom_mma_broker.models import Candidate, Classification

        time.sleep(3)  # let the consumer join
        latencies, request_latency = [], None
        with open_producer(info.url) as producer:
            for message in replay_messages():
                encoded = message.model().serialize()
                _, headers = hop_headers(encoded["format"], message_id=replay_message_id(message),
                                         extra=message.headers)  # fmt: skip
                sent = time.monotonic()
                producer.write_raw(encoded["content"], headers, topic=TOPICS[message.stream], key=message.key)
                producer.flush()
                if message.stream != "photometry":
                    time.sleep(1.0)
                    continue
                mjd = message.content["mjd"]
                deadline = sent + 30
                while time.monotonic() < deadline:
                    if DerivedAlertRecord.objects.filter(candidate_name="AT2017gfo", latest_point_mjd=mjd).exists():
                        latencies.append(time.monotonic() - sent)
                        if request_latency is None and ObservationRecord.objects.exists():
                            request_latency = time.monotonic() - sent
                        break
                    if Classification.objects.filter(latest_point_mjd=mjd, score__lt=0.1).exists():
                        break  # below the publication floor: no derived alert to wait for
                    time.sleep(0.01)
                time.sleep(max(0.0, args.gap - (time.monotonic() - sent)))

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

        deadline = time.monotonic() + 1800
        while time.monotonic() < deadline:
            n = Candidate.objects.filter(name__startswith="SYN").count()
            if n == args.candidates and not unclassified_candidates().exists():
                pending = OutboxMessage.objects.filter(sent_at__isnull=True).count()
                sent_ids = set(OutboxMessage.objects.values_list("alert_id", flat=True))
                got = DerivedAlertRecord.objects.filter(alert_id__in=sent_ids).count()
                if pending == 0 and got == len(sent_ids):
                    break
            time.sleep(0.5)
        elapsed = time.monotonic() - t0
        figures = {
            "p50_s": round(percentile(latencies, 0.5), 3),
            "p99_s": round(percentile(latencies, 0.99), 3),
            "max_s": round(max(latencies), 3) if latencies else None,
            "latency_samples": len(latencies),
            "observation_request_latency_s": None if request_latency is None else round(request_latency, 3),
            "messages": len(points),
            "candidates": args.candidates,
            "messages_per_s": round(len(points) / elapsed, 1),
            "publish_s": round(published, 2),
            "classifications": Classification.objects.filter(candidate__name__startswith="SYN").count(),
            "derived_alerts": DerivedAlertRecord.objects.count(),
            "setup": "readstreams + 1 celery worker (solo) on Redis, PostgreSQL 15, embedded Kafka, 2 cores",
        }
    finally:
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
