"""Optical alerts from the embedded broker into Targets, photometry and cutouts on PostgreSQL: alerts/s.

Ours: :class:`tom_mma_broker.fink.FinkAlertStream` (the reliable stream on a ``subscribe()`` consumer:
archive, dedup, offsets committed after the database commit) with the handlers of
``tom_mma.handlers.optical``: each alert finds or creates its Target, adds its photometry (detections
and limits) in bulk, keeps its three cutouts as data products and Fink's scores as extras.
Peer, same run: tom_fink 2.0.1's livestream handler ``alert_logger`` (a Target for the first alert of
an object, nothing else kept). tom_fink's ``FinkAlertStream`` cannot run as shipped against fink-client 12
(``AlertConsumer`` now requires ``survey``), so the closest equivalent runs: fink-client 12.3's own
``AlertConsumer`` decoding the same messages, handing each alert to ``alert_logger``. ``alert_logger``
reads ZTF fields only, so the ratio is on ZTF-size alerts.

Alerts, in Fink's livestream form (schemaless Avro, the schema as key), each of a new object:
ZTF-size, the real Fink ZTF sample alerts (11 to 34 history points, three cutouts, ~55 KB);
Rubin-size, the real Rubin alerts of Fink's data-transfer sample with their history cut to 300
sources (150 previous sources, 150 forced), three cutouts. The broker's classifier receiver is
disconnected in the worker: the figures are the TOM's ingest (the classifier runs in Celery).

Each measurement runs in a fresh process and database; the consumer is single-threaded, so its rate
is per core (PostgreSQL works on the other core). Two processes: one consumer group over a topic of two
partitions.

    python bench/optical_ingest.py [--ztf 1000] [--rubin 300]

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# the shared sample alerts beside the repository (a worktree elsewhere names them with TOM_MMA_BENCH_DATA)
# (a worktree under <workplace>/wt/<name> finds them two levels up)
_BESIDE = next((p / "shared" / "data" for p in (ROOT.parent, ROOT.parent.parent) if (p / "shared" / "data").is_dir()),
               ROOT.parent / "shared" / "data")  # fmt: skip
DATA = Path(os.environ.get("TOM_MMA_BENCH_DATA", _BESIDE))
PG_ADMIN = "postgres://postgres@127.0.0.1:5432/postgres"


def _records(path: Path) -> tuple[list[dict], dict]:
    import fastavro

    with open(path, "rb") as f:
        reader = fastavro.reader(f)
        return list(reader), reader.writer_schema


def ztf_alerts(n: int) -> list[tuple[bytes, bytes]]:
    import fastavro

    samples = [_records(p) for p in sorted((DATA / "fink").glob("fink-broker-sample-alert-*.avro"))]
    out = []
    for i in range(n):
        (record,), schema = samples[i % len(samples)]
        record = dict(record, objectId=f"ZTF26bench{i:06d}", candid=record["candid"] + i)
        record["candidate"] = dict(record["candidate"], ra=(i * 0.01) % 360, dec=-30 + (i * 0.001) % 60)
        parsed = fastavro.parse_schema(schema)
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, parsed, record)
        out.append((buf.getvalue(), json.dumps(schema).encode()))
    return out


def rubin_alerts(n: int, history: int = 300) -> list[tuple[bytes, bytes]]:
    import fastavro

    records, schema = _records(DATA / "fink" / "part-2-918301.avro")
    records = [r for r in records if (r["diaObject"] or {}).get("diaObjectId")]
    parsed = fastavro.parse_schema(schema)
    key = json.dumps(schema).encode()
    out = []
    for i in range(n):
        record = copy.copy(records[i % len(records)])
        oid = 900000000000000000 + i
        record["diaObject"] = dict(
            record["diaObject"], diaObjectId=oid, ra=(i * 0.01) % 360, dec=-60 + (i * 0.001) % 60
        )
        record["diaSource"] = dict(record["diaSource"], diaObjectId=oid, diaSourceId=800000000000000000 + i)
        record["prvDiaSources"] = (record["prvDiaSources"] or [])[: history // 2]
        record["prvDiaForcedSources"] = (record["prvDiaForcedSources"] or [])[: history - len(record["prvDiaSources"])]
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, parsed, record)
        out.append((buf.getvalue(), key))
    return out


def produce(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]], partitions: int = 1) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    for i, (value, key) in enumerate(messages):
        producer.produce(topic, value=value, key=key, partition=i % partitions)
        producer.poll(0)
    producer.flush(60)


# --- worker processes -------------------------------------------------------------------------
def worker(kind: str, url: str, topic: str, n: int, survey: str, group: str) -> None:
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from tom_targets.models import Target

    if kind == "ours":
        from tom_mma.signals import optical_photometry_added
        from tom_mma_broker.fink import FinkAlertStream

        optical_photometry_added.receivers = []  # the TOM side alone (the classifier runs in Celery)
        stream = FinkAlertStream(URL=url, TOPICS=[topic], SURVEY=survey, GROUP_ID=group, SESSION_TIMEOUT_MS=6000)
        stats = stream.listen(max_messages=n, idle_timeout=20)
        t0, c0 = stream.first_batch_at
        elapsed, cpu = time.monotonic() - t0, time.process_time() - c0
        print(json.dumps({"elapsed": elapsed, "cpu": cpu, "stats": stats, "targets": Target.objects.count(),
                          "start": t0, "end": time.monotonic()}), flush=True)  # fmt: skip
        return
    # tom_fink 2.0.1's handler, fed by fink-client 12.3's AlertConsumer (see the module docstring)
    from fink_client.consumer import AlertConsumer
    from tom_fink.alertstream import alert_logger

    consumer = AlertConsumer(
        [topic], {"bootstrap.servers": url.removeprefix("kafka://"), "group.id": group}, survey="ztf"
    )
    done, t0, c0 = 0, None, None
    deadline = time.monotonic() + 300
    while done < n and time.monotonic() < deadline:
        for topic_name, alert, _key in consumer.consume(500, 1.0):
            if alert is None:
                continue
            if t0 is None:
                t0, c0 = time.monotonic(), time.process_time()
            alert_logger(alert, topic_name)
            done += 1
    consumer.close()
    elapsed, cpu = time.monotonic() - t0, time.process_time() - c0
    print(json.dumps({"elapsed": elapsed, "cpu": cpu, "handled": done, "targets": Target.objects.count()}), flush=True)


def _env(tmp: Path) -> tuple[dict, str]:
    name = f"tom_mma_bench_{uuid.uuid4().hex[:8]}"
    subprocess.run(["psql", PG_ADMIN, "-qc", f"CREATE DATABASE {name}"], check=True)
    env = dict(
        os.environ, DJANGO_SETTINGS_MODULE="example_tom.settings", PYTHONPATH=str(ROOT),
        TOM_MMA_STATE_DIR=str(tmp / "state"), TOM_MMA_LOG_LEVEL="WARNING", DJANGO_DEBUG="0",
        DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{name}",
    )  # fmt: skip
    return env, name


def run_workers(kind: str, url: str, topic: str, n: int, survey: str, tmp: Path, processes: int = 1) -> dict:
    env, name = _env(tmp)
    group = f"bench-{uuid.uuid4().hex[:6]}"
    per = n if processes == 1 else n // processes
    cmd = [sys.executable, __file__, "--worker", kind, "--url", url, "--topic", topic, "--n", str(per),
           "--survey", survey, "--group", group]  # fmt: skip
    try:
        if processes > 1:  # migrate once, so that the workers do not race on it
            subprocess.run(
                [sys.executable, str(ROOT / "manage.py"), "migrate", "--verbosity", "0", "--skip-checks"],
                env=env,
                check=True,
            )
        procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(processes)]  # fmt: skip
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=1200)
            lines = [line for line in out.splitlines() if line.startswith("{")]
            if not lines:
                raise RuntimeError(f"{kind} failed: {err[-3000:]}")
            results.append(json.loads(lines[-1]))
    finally:
        subprocess.run(["psql", PG_ADMIN, "-qc", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"], check=False)
    if processes == 1:
        (result,) = results
        result["per_s"] = n / result["elapsed"]
        result["per_cpu_s"] = n / result["cpu"]
        return result
    # the processes run on one clock (monotonic is system-wide on Linux): first batch to last return
    handled = sum(r["stats"]["handled"] for r in results)
    span = max(r["end"] for r in results) - min(r["start"] for r in results)
    return {"per_s": handled / span, "handled": handled, "cpu": sum(r["cpu"] for r in results), "runs": results}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ztf", type=int, default=1000)
    parser.add_argument("--rubin", type=int, default=300)
    parser.add_argument("--worker")
    parser.add_argument("--url")
    parser.add_argument("--topic")
    parser.add_argument("--n", type=int)
    parser.add_argument("--survey")
    parser.add_argument("--group")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    if args.worker:
        worker(args.worker, args.url, args.topic, args.n, args.survey, args.group)
        return

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_tom.settings")
    import django

    django.setup()
    from tom_mma_broker.embedded import EmbeddedKafka, create_topics

    tmp = Path(tempfile.mkdtemp(prefix="tom-mma-bench-"))
    broker = EmbeddedKafka(tmp / "kafka")
    info = broker.start(["bench.fink-ztf", "bench.fink-lsst"])
    try:
        create_topics(info.bootstrap, ["bench.fink-lsst-2p"], partitions=2)
        ztf, rubin = ztf_alerts(args.ztf), rubin_alerts(args.rubin)
        produce(info.bootstrap, "bench.fink-ztf", ztf)
        produce(info.bootstrap, "bench.fink-lsst", rubin)
        produce(info.bootstrap, "bench.fink-lsst-2p", rubin, partitions=2)
        runs = {
            "ours_ztf": run_workers("ours", info.url, "bench.fink-ztf", args.ztf, "ztf", tmp),
            "tom_fink_ztf": run_workers("tom_fink", info.url, "bench.fink-ztf", args.ztf, "ztf", tmp),
            "ours_rubin": run_workers("ours", info.url, "bench.fink-lsst", args.rubin, "lsst", tmp),
            "ours_rubin_2p": run_workers("ours", info.url, "bench.fink-lsst-2p", args.rubin, "lsst", tmp, processes=2),
        }
        for name, r in runs.items():
            print(f"{name:16s} {r['per_s']:8.1f} alerts/s wall  CPU {r['cpu']:.1f} s", flush=True)
        figures = {
            "ztf_n": args.ztf, "rubin_n": args.rubin, "rubin_history": 300,
            "ztf_alerts_per_s_postgres": round(runs["ours_ztf"]["per_s"], 1),
            "ztf_alerts_per_cpu_s_postgres": round(runs["ours_ztf"]["per_cpu_s"], 1),
            "rubin_alerts_per_s_postgres": round(runs["ours_rubin"]["per_s"], 1),
            "rubin_alerts_per_cpu_s_postgres": round(runs["ours_rubin"]["per_cpu_s"], 1),
            "tom_fink_ztf_alerts_per_s_postgres": round(runs["tom_fink_ztf"]["per_s"], 1),
            "ratio_vs_tom_fink": round(runs["ours_ztf"]["per_s"] / runs["tom_fink_ztf"]["per_s"], 2),
            # the same ratio per consumer CPU-second (the machine's load moves it much less than the wall rates)
            "ratio_vs_tom_fink_per_cpu_s": round(runs["ours_ztf"]["per_cpu_s"] / runs["tom_fink_ztf"]["per_cpu_s"], 2),
            "two_process_alerts_per_s": round(runs["ours_rubin_2p"]["per_s"], 1),
            "two_process_handled": runs["ours_rubin_2p"]["handled"],
            "consumer_cpu_s": {k: round(r["cpu"], 2) for k, r in runs.items()},
            "cores": os.cpu_count(),
        }  # fmt: skip
    finally:
        broker.stop()
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
