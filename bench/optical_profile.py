"""Profile the optical ingest in-process: the bench's alerts through the Ingestor, without Kafka.

The same alerts as ``optical_ingest.py`` (each of a new object), built into envelopes as the Fink stream
builds them and handed to :class:`tom_mma_broker.ingest.Ingestor` in batches of the stream's size, on a
fresh PostgreSQL database (or SQLite with ``--sqlite``). Prints the rate, then cProfile's top entries
(``--profile``).

    python bench/optical_profile.py [--ztf 300] [--rubin 100] [--profile] [--sqlite]

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

PG_ADMIN = "postgres://postgres@127.0.0.1:5432/postgres"


def run(survey: str, messages: list[tuple[bytes, bytes]], batch: int, profile: bool) -> dict:
    from django.utils.module_loading import import_string

    from tom_mma_broker.envelope import Envelope
    from tom_mma_broker.fink import SURVEY_HANDLERS
    from tom_mma_broker.ingest import Ingestor

    topic = f"bench.fink-{survey}"
    ingestor = Ingestor({topic: import_string(SURVEY_HANDLERS[survey])})
    envelopes = [
        Envelope(topic=topic, payload=value, partition=0, offset=i, kafka_key=key, timestamp_ms=1)
        for i, (value, key) in enumerate(messages)
    ]
    for e in envelopes:  # the stream's prefetch thread decodes before the batch
        e.predecode()
    profiler = cProfile.Profile() if profile else None
    t0, c0 = time.monotonic(), time.process_time()
    if profiler:
        profiler.enable()
    outcomes: dict[str, int] = {}
    for start in range(0, len(envelopes), batch):
        for r in ingestor.ingest(envelopes[start : start + batch]):
            outcomes[r.outcome.value] = outcomes.get(r.outcome.value, 0) + 1
    if profiler:
        profiler.disable()
    elapsed, cpu = time.monotonic() - t0, time.process_time() - c0
    if profiler:
        stats = pstats.Stats(profiler)
        stats.sort_stats("cumulative").print_stats(45)
        stats.sort_stats("tottime").print_stats(25)
    n = len(messages)
    return {"n": n, "per_s": n / elapsed, "per_cpu_s": n / cpu, "outcomes": outcomes}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ztf", type=int, default=300)
    parser.add_argument("--rubin", type=int, default=100)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--sqlite", action="store_true")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tom-mma-prof-"))
    name = f"tom_mma_prof_{uuid.uuid4().hex[:8]}"
    os.environ.update(
        DJANGO_SETTINGS_MODULE="example_tom.settings", TOM_MMA_STATE_DIR=str(tmp / "state"),
        TOM_MMA_LOG_LEVEL="WARNING", DJANGO_DEBUG="0",
    )  # fmt: skip
    if args.sqlite:
        os.environ["DATABASE_URL"] = f"sqlite:///{tmp / 'db.sqlite3'}"
    else:
        subprocess.run(["psql", PG_ADMIN, "-qc", f"CREATE DATABASE {name}"], check=True)
        os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{name}"
    try:
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        from optical_ingest import rubin_alerts, ztf_alerts

        from tom_mma.signals import optical_photometry_added

        optical_photometry_added.receivers = []  # as the bench: the classifier runs in Celery
        figures = {}
        if args.ztf:
            figures["ztf"] = run("ztf", ztf_alerts(args.ztf), args.batch, args.profile)
        if args.rubin:
            figures["lsst"] = run("lsst", rubin_alerts(args.rubin), args.batch, args.profile)
        from django.db import connection

        connection.close()
    finally:
        if not args.sqlite:
            subprocess.run(["psql", PG_ADMIN, "-qc", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"], check=False)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
