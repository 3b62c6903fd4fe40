"""Benchmark: one LVK notice end to end, with 10,000 Targets already in the TOM.

Each round hands the Avro bytes of a real notice (MS181101ab-preliminary, renamed to a new superevent each
round so that every round does the whole work) to the ``igwn.gwalert`` topic handler, as the stream would:
decode (hop ``AvroBlob``), validate, read the sky map, store event, notice and sky map version, commit, then
rank the 10,000 Targets (the task queued on commit runs eagerly here). p50 and p99 of the wall time.

Run::

    .venv/bin/python bench/lvk_notice.py [--rounds 100] [--targets 10000]
    .venv/bin/python bench/lvk_notice.py --postgres postgres://postgres@127.0.0.1:5432/postgres

SQLite in a temporary file by default; with ``--postgres`` a scratch database ``bench_tom_mma_gw`` is created on
that server and dropped at the end. The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTICE = ROOT / "tests" / "data" / "lvk" / "MS181101ab-preliminary.avro"
SCRATCH_DB = "bench_tom_mma_gw"
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def _suffix(i: int) -> str:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return letters[i // 26 % 26] + letters[i % 26] + letters[i // 676 % 26]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--targets", type=int, default=10_000)
    parser.add_argument("--postgres", default="", help="a PostgreSQL server URL (a scratch database is used)")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="also profile N more rounds (cProfile) and print the top functions to stderr")  # fmt: skip
    args = parser.parse_args()

    tmp = tempfile.TemporaryDirectory()
    if args.postgres:
        import psycopg

        with psycopg.connect(args.postgres, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {SCRATCH_DB}")
            conn.execute(f"CREATE DATABASE {SCRATCH_DB}")
        base = args.postgres.rsplit("/", 1)[0]
        os.environ["DATABASE_URL"] = f"{base}/{SCRATCH_DB}"
    else:
        os.environ["DATABASE_URL"] = f"sqlite:///{tmp.name}/bench.sqlite3"
    os.environ["TOM_MMA_STATE_DIR"] = tmp.name
    os.environ.pop("CELERY_BROKER_URL", None)  # tasks run eagerly, in this process
    os.environ["DJANGO_SETTINGS_MODULE"] = "example_tom.settings"
    os.environ.setdefault("TOM_MMA_LOG_LEVEL", "WARNING")

    import django

    django.setup()
    logging.getLogger("tom_mma").setLevel(logging.WARNING)  # a script, not library code
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)

    import fastavro
    import numpy as np
    from hop.models import AvroBlob
    from tom_targets.models import Target

    from tom_mma import receivers
    from tom_mma.handlers.lvk import igwn_gwalert_handler
    from tom_mma.models import EventCandidate, GWEvent

    receivers.connect()
    rng = np.random.default_rng(4)
    ra = rng.uniform(0, 360, args.targets)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, args.targets)))
    Target.objects.bulk_create(
        [
            Target(name=f"bench-{i:05d}", type="SIDEREAL", ra=float(r), dec=float(d))
            for i, (r, d) in enumerate(zip(ra, dec, strict=True))
        ],
        batch_size=1000,
    )

    with open(NOTICE, "rb") as f:
        reader = fastavro.reader(f)
        schema, record = reader.writer_schema, next(reader)

    def wire_bytes(i: int) -> bytes:
        out = io.BytesIO()
        fastavro.writer(out, schema, [dict(record, superevent_id=f"MS181101{_suffix(i)}")])
        return out.getvalue()

    payloads = [wire_bytes(i) for i in range(args.rounds + 3 + args.profile)]
    for payload in payloads[:3]:  # warm-up: imports, schema parse, first queries
        igwn_gwalert_handler(AvroBlob.deserialize(payload))
    times = []
    for payload in payloads[3 : 3 + args.rounds]:
        t0 = time.perf_counter()
        result = igwn_gwalert_handler(AvroBlob.deserialize(payload))
        times.append(time.perf_counter() - t0)
        assert result.created and result.skymap_changed
    if args.profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.enable()
        for payload in payloads[3 + args.rounds :]:
            igwn_gwalert_handler(AvroBlob.deserialize(payload))
        profiler.disable()
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(40)
    event = GWEvent.objects.latest("id")
    ranked = EventCandidate.objects.filter(event=event).count()
    assert ranked == args.targets, ranked
    # the ranking part alone: re-rank the last event's 10,000 candidates (an upsert of existing rows)
    from tom_mma.gw.ranking import rank_event

    rerank = []
    for _ in range(10):
        t0 = time.perf_counter()
        rank_event(event.pk)
        rerank.append(time.perf_counter() - t0)
    figures = {
        "benchmark": "lvk_notice",
        "database": connection.vendor,
        "rounds": len(times),
        "targets": args.targets,
        "notice": "MS181101ab-preliminary.avro (781,649 bytes, sky map 19,200 pixels)",
        "p50_s": round(statistics.median(times), 4),
        "p99_s": round(_percentile(times, 0.99), 4),
        "max_s": round(max(times), 4),
        "rerank_p50_s": round(statistics.median(rerank), 4),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
    }
    connection.close()
    if args.postgres:
        import psycopg

        with psycopg.connect(args.postgres, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {SCRATCH_DB}")
    tmp.cleanup()
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
