"""Archive ingest from the embedded broker: messages/s into SQLite and PostgreSQL, ours vs the stock TOM path.

Ours: ``tom_mma_broker.streams.ReliableHopskotchAlertStream`` (batched archive of raw bytes + decoded
content, dedup, offsets committed after the database commit: the at-least-once guarantee on).
Peer, in the same run: tom-alertstreams 1.3's ``HopskotchAlertStream.listen`` (its own read loop,
authentication switched off because the embedded broker is plaintext) feeding a handler that saves
tom_base's ``AlertStreamMessage`` one row per message (the payload is kept nowhere).

Each measurement runs in a fresh process (so neither path warms the other) against a fresh
database; the consumer process is single-threaded, so its messages/s is "per core" (the database
server works on the other core, as it would on its own host). The messages: the real ZTF/Fink
sample alerts of ``../shared/data`` (Avro with cutouts, ~54-77 KB), cycled with fresh hop ``_id``s,
and 1 KB JSON messages.

    python bench/archive_ingest.py [--n 3000]

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
DATA = ROOT.parent / "shared" / "data"
PG_ADMIN = "postgres://postgres@127.0.0.1:5432/postgres"


def sample_alerts() -> list[bytes]:
    files = (
        sorted((DATA / "ztf").glob("*.avro"))
        + sorted((DATA / "fink").glob("ZTF*.avro"))
        + sorted((DATA / "fink").glob("fink-broker-sample-alert-*.avro"))
    )
    return [f.read_bytes() for f in files]


def produce(url: str, topic: str, payloads: list[bytes], n: int, fmt: str) -> None:
    from tom_mma_broker.kafka import hop_headers, open_producer

    with open_producer(url, topic) as producer:
        for i in range(n):
            _, headers = hop_headers(fmt)
            producer.write_raw(payloads[i % len(payloads)], headers, topic=topic)
        producer.flush()


# --- worker processes -------------------------------------------------------------------------
def worker(kind: str, url: str, topic: str, n: int) -> None:
    """Consume ``n`` messages of ``topic`` with path ``kind``; print elapsed and CPU seconds."""
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    if kind == "ours":
        from tom_mma_broker.streams import ReliableHopskotchAlertStream

        stream = ReliableHopskotchAlertStream(
            URL=url, GROUP_ID=f"bench-{uuid.uuid4().hex[:6]}", START_POSITION="EARLIEST", TOPIC_HANDLERS={topic: None}
        )
        stats = stream.listen(max_messages=n, idle_timeout=30)
        # from the first message on, as for the stock path below
        t0, c0 = stream.first_batch_at
        elapsed, cpu = time.monotonic() - t0, time.process_time() - c0
        from tom_mma_broker.models import ArchivedAlert

        stored = ArchivedAlert.objects.filter(topic=topic).count()
        print(json.dumps({"elapsed": elapsed, "cpu": cpu, "stored": stored, "stats": stats}), flush=True)
        return

    # the stock path: tom-alertstreams' listen loop, unchanged, with hop auth off
    from hop import Stream
    from hop.io import StartPosition
    from tom_alerts.models import AlertStreamMessage
    from tom_alertstreams.alertstreams.hopskotch import HopskotchAlertStream

    state = {"count": 0, "t0": None, "c0": None}

    def save_message(alert, metadata):  # one AlertStreamMessage per message, as tom_base's handlers do
        if state["t0"] is None:
            state["t0"], state["c0"] = time.perf_counter(), time.process_time()
        message_id = next((uuid.UUID(bytes=v) for k, v in metadata.headers if k == "_id"), None)
        AlertStreamMessage.objects.create(topic=metadata.topic, message_id=str(message_id), exchange_status="ingested")
        state["count"] += 1
        if state["count"] >= n:
            elapsed, cpu = time.perf_counter() - state["t0"], time.process_time() - state["c0"]
            stored = AlertStreamMessage.objects.filter(topic=topic).count()
            print(json.dumps({"elapsed": elapsed, "cpu": cpu, "stored": stored}), flush=True)
            os._exit(0)

    class PlaintextHopskotch(HopskotchAlertStream):
        def get_all_public_topics(self):
            return []

        def get_stream(self, start_position=StartPosition.LATEST):
            return Stream(auth=False, start_at=StartPosition.EARLIEST)

    sys.modules[__name__].save_message = save_message
    stream = PlaintextHopskotch(
        URL=url,
        GROUP_ID=f"stock-{uuid.uuid4().hex[:6]}",
        USERNAME="",
        PASSWORD="",
        TOPIC_HANDLERS={topic: f"{__name__}.save_message"},
    )
    stream.alert_handler = {topic: save_message}
    stream.listen()


def run_worker(kind: str, db: str, url: str, topic: str, n: int, tmp: Path) -> dict:
    env = dict(
        os.environ,
        DJANGO_SETTINGS_MODULE="example_tom.settings",
        PYTHONPATH=str(ROOT),
        TOM_MMA_STATE_DIR=str(tmp / "state"),
        TOM_MMA_LOG_LEVEL="WARNING",
        DJANGO_DEBUG="0",
    )
    if db == "postgres":
        name = f"tom_mma_bench_{uuid.uuid4().hex[:8]}"
        subprocess.run(["psql", PG_ADMIN, "-qc", f"CREATE DATABASE {name}"], check=True)
        env["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{name}"
    else:
        name = str(tmp / f"bench-{uuid.uuid4().hex[:8]}.sqlite3")
        env["DATABASE_URL"] = f"sqlite:///{name}"
    try:
        out = subprocess.run(
            [sys.executable, __file__, "--worker", kind, "--url", url, "--topic", topic, "--n", str(n)],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
        if not lines:
            raise RuntimeError(f"{kind}/{db} failed: {out.stderr[-3000:]}")
        result = json.loads(lines[-1])
    finally:
        if db == "postgres":
            subprocess.run(["psql", PG_ADMIN, "-qc", f"DROP DATABASE IF EXISTS {name}"], check=False)
    if result["stored"] < n:
        raise RuntimeError(f"{kind}/{db}: only {result['stored']} of {n} stored")
    result["per_s"] = n / result["elapsed"]
    result["per_cpu_s"] = n / result["cpu"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--worker")
    parser.add_argument("--url")
    parser.add_argument("--topic")
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
    ztf, js = "bench.ztf", "bench.json"
    info = broker.start([ztf, js])
    try:
        alerts = sample_alerts()
        produce(info.url, ztf, alerts, args.n, "avro")
        one_kb = [json.dumps({"seq": i, "text": "x" * 980}).encode() for i in range(100)]
        produce(info.url, js, one_kb, args.n, "json")
        figures: dict[str, object] = {"n": args.n, "ztf_alert_mean_bytes": int(sum(map(len, alerts)) / len(alerts))}
        runs = {}
        for db in ("postgres", "sqlite"):
            runs[f"ours_ztf_{db}"] = run_worker("ours", db, info.url, ztf, args.n, tmp)
            runs[f"stock_ztf_{db}"] = run_worker("stock", db, info.url, ztf, args.n, tmp)
        runs["ours_json_postgres"] = run_worker("ours", "postgres", info.url, js, args.n, tmp)
        runs["ours_json_sqlite"] = run_worker("ours", "sqlite", info.url, js, args.n, tmp)
        for name, r in runs.items():
            print(f"{name:22s} {r['per_s']:8.0f} msg/s wall  {r['per_cpu_s']:8.0f} msg per CPU-second")
        figures.update(
            ztf_alerts_per_s_postgres=round(runs["ours_ztf_postgres"]["per_s"]),
            ztf_alerts_per_s_sqlite=round(runs["ours_ztf_sqlite"]["per_s"]),
            json_msgs_per_s_postgres=round(runs["ours_json_postgres"]["per_s"]),
            json_msgs_per_s_sqlite=round(runs["ours_json_sqlite"]["per_s"]),
            ztf_alerts_per_cpu_s_postgres=round(runs["ours_ztf_postgres"]["per_cpu_s"]),
            stock_ztf_per_s_postgres=round(runs["stock_ztf_postgres"]["per_s"]),
            stock_ztf_per_s_sqlite=round(runs["stock_ztf_sqlite"]["per_s"]),
            ratio_vs_stock_postgres=round(runs["ours_ztf_postgres"]["per_s"] / runs["stock_ztf_postgres"]["per_s"], 2),
            ratio_vs_stock_sqlite=round(runs["ours_ztf_sqlite"]["per_s"] / runs["stock_ztf_sqlite"]["per_s"], 2),
            stock_stores_payload=False,
            cores=os.cpu_count(),
        )
    finally:
        broker.stop()
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
