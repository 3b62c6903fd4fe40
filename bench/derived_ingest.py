"""Derived alerts from the embedded broker into Targets, photometry and score history (PostgreSQL): alerts/s.

The TOM's side of the results topic: ``readstreams`` reading the broker's derived alerts
(``tom_mma.handlers.derived.derived_alert_handler`` on the reliable stream: archive, dedup, offsets after the
database commit), each alert merged into its candidate's Target, its photometry added without duplicates, the
score history kept and the observation rules evaluated. Ours: the handler as shipped, whose ``batch`` takes
the stream batch's alerts at once (Targets in one look-up, records and photometry one insert each). Peer,
same run: the same service one alert at a time (the handler without its ``batch``: what the stream did
before).

Alerts: ``--alerts`` classifications of ``--alerts / 4`` candidates (four successive alerts each, as the
broker publishes one per new point), each with its light curve so far (up to four points), no GW event named
(the score rule then holds for none: the rules are evaluated, no facility is called). Each measurement runs
in a fresh process and database; the stream is single-threaded, so its rate is per core.

    python bench/derived_ingest.py [--alerts 4000]

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN = "postgres://postgres@127.0.0.1:5432/postgres"


def one_by_one(alert, metadata=None):
    """The peer: the shipped handler, called for each message (no ``batch``)."""
    from tom_mma.handlers.derived import derived_alert_handler

    return derived_alert_handler(alert, metadata)


def alerts(n: int) -> list[bytes]:
    """``n`` derived alerts (schema v1) of ``n // 4`` candidates, each candidate's in the order of its points."""
    from tom_mma.schemas.derived_alert import SCHEMA_ID

    out = []
    for c in range(max(1, n // 4)):
        ra, dec = (c * 0.01) % 360.0, -30.0 + (c // 36000) * 0.01
        points = []
        for k in range(4):
            points.append({"mjd": 60000.0 + 0.3 * k, "band": "gri"[k % 3], "magnitude": 19.0 + 0.4 * k,
                           "magnitude_error": 0.05, "upper_limit": False, "telescope": "bench"})  # fmt: skip
            out.append(json.dumps({
                "schema": SCHEMA_ID, "alert_id": str(uuid.uuid4()), "kind": "classification",
                "created": "2026-12-04T00:00:00Z",
                "candidate": {"name": f"BENCH{c:06d}", "aliases": [], "ra": ra, "dec": dec},
                "latest_point_mjd": points[-1]["mjd"], "kilonova_score": 0.2 + 0.1 * k,
                "model_version": "bench", "features": {}, "source_message_ids": [str(uuid.uuid4())],
                "gw_event": None, "photometry": list(points), "retracts": None, "reason": None,
            }).encode())  # fmt: skip
    return out[:n]


def produce(bootstrap: str, topic: str, messages: list[bytes]) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    for value in messages:
        headers = [("_id", uuid.uuid4().bytes), ("_format", b"json"), ("_sender", b"bench")]
        producer.produce(topic, value=value, headers=headers)
        producer.poll(0)
    producer.flush(60)


def worker(handler: str, url: str, topic: str, n: int) -> None:
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from tom_dataproducts.models import PhotometryReducedDatum
    from tom_targets.models import Target

    from tom_mma.models import DerivedAlertRecord
    from tom_mma_broker.streams import ReliableHopskotchAlertStream

    stream = ReliableHopskotchAlertStream(URL=url, GROUP_ID=f"bench-{uuid.uuid4().hex[:6]}",
                                          START_POSITION="EARLIEST", TOPIC_HANDLERS={topic: handler})  # fmt: skip
    stats = stream.listen(max_messages=n, idle_timeout=30)
    t0, c0 = stream.first_batch_at
    elapsed, cpu = time.monotonic() - t0, time.process_time() - c0
    print(json.dumps({"elapsed": elapsed, "cpu": cpu, "stats": stats, "targets": Target.objects.count(),
                      "records": DerivedAlertRecord.objects.count(),
                      "photometry": PhotometryReducedDatum.objects.count()}), flush=True)  # fmt: skip


def run_worker(handler: str, url: str, topic: str, n: int, tmp: Path) -> dict:
    name = f"tom_mma_bench_{uuid.uuid4().hex[:8]}"
    subprocess.run(["psql", PG_ADMIN, "-qc", f"CREATE DATABASE {name}"], check=True)
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="example_tom.settings", PYTHONPATH=str(ROOT),
               TOM_MMA_STATE_DIR=str(tmp / "state"), TOM_MMA_LOG_LEVEL="WARNING", DJANGO_DEBUG="0",
               DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{name}")  # fmt: skip
    cmd = [sys.executable, __file__, "--worker", handler, "--url", url, "--topic", topic, "--n", str(n)]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        if not lines:
            raise RuntimeError(f"{handler} failed: {proc.stderr[-3000:]}")
        result = json.loads(lines[-1])
    finally:
        subprocess.run(["psql", PG_ADMIN, "-qc", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"], check=False)
    result["per_s"] = n / result["elapsed"]
    result["per_cpu_s"] = n / result["cpu"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alerts", type=int, default=4000)
    parser.add_argument("--worker")
    parser.add_argument("--url")
    parser.add_argument("--topic")
    parser.add_argument("--n", type=int)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    if args.worker:
        worker(args.worker, args.url, args.topic, args.n)
        return
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_tom.settings")
    import django

    django.setup()
    from tom_mma_broker.embedded import EmbeddedKafka

    tmp = Path(tempfile.mkdtemp(prefix="tom-mma-bench-"))
    broker = EmbeddedKafka(tmp / "kafka")
    info = broker.start(["bench.derived"])
    try:
        produce(info.bootstrap, "bench.derived", alerts(args.alerts))
        runs = {
            "batched": run_worker("tom_mma.handlers.derived.derived_alert_handler", info.url, "bench.derived",
                                  args.alerts, tmp),
            "one_by_one": run_worker("derived_ingest.one_by_one", info.url, "bench.derived", args.alerts, tmp),
        }  # fmt: skip
    finally:
        broker.stop()
    for name, r in runs.items():
        print(f"{name:12s} {r['per_s']:8.1f} alerts/s wall  CPU {r['cpu']:.1f} s  targets {r['targets']}  "
              f"records {r['records']}  photometry {r['photometry']}", flush=True)  # fmt: skip
        if r["records"] != args.alerts or r["targets"] != max(1, args.alerts // 4):
            raise SystemExit(f"{name}: {r['records']} records and {r['targets']} targets stored")
    print(json.dumps({
        "alerts": args.alerts,
        "derived_alerts_per_s_postgres": round(runs["batched"]["per_s"], 1),
        "derived_alerts_per_cpu_s_postgres": round(runs["batched"]["per_cpu_s"], 1),
        "one_by_one_alerts_per_s_postgres": round(runs["one_by_one"]["per_s"], 1),
        "ratio_vs_one_by_one": round(runs["batched"]["per_s"] / runs["one_by_one"]["per_s"], 2),
        "consumer_cpu_s": {k: round(r["cpu"], 2) for k, r in runs.items()},
        "load_average": os.getloadavg()[0],
    }))  # fmt: skip


if __name__ == "__main__":
    main()
