"""Throughput and latency of the kilonova classifier.

* Throughput, on one core (this process, one thread): 10,000 light curves (``--curves`` synthetic light curves
  of every kind and survey, seeded, and ``--prefixes`` growing prefixes of each, as the broker scores them)
  scored with features + model, one by one (``KilonovaModel.classify``) and in batches of ``--batch``
  (``classify_many``); and the features alone in the same batches (``extract_features_many``).
* Peer, same run and light curves: the ``light-curve`` package (Malanchev et al. 2021; the Rust feature
  extractor brokers use), computing a standard set of 8 features per band with enough detections, one
  light curve at a time: features only, no model. ``ratio_vs_light_curve`` is ours (one by one, with the
  model) over it; ``ratio_features_batched_vs_light_curve`` our batched features alone over it.
* Latency through a Redis-backed worker: a Celery worker (solo pool) of the example TOM on Redis and
  PostgreSQL; for ``--latency-candidates`` candidates, photometry points are stored and
  ``classify_candidate`` enqueued, one candidate every ``--latency-gap`` seconds; the time from the enqueue
  to the stored classification row (its ``created`` timestamp), p50 and p99. Then ``--worker-batch``
  candidates stored at once and scored by the same worker in ``classify_candidates`` tasks (batches of
  ``BATCH_SIZE``): candidates per second from the first enqueue to the last stored row.

The last line printed is one JSON object.

    python bench/classifier.py [--curves 1000 --prefixes 10 --batch 1000 --latency-candidates 200]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PG_ADMIN = "postgres://postgres@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379/12"
MIN_POINTS = 4  # the most any of the peer's 8 features needs (Kurtosis)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def light_curves(n_curves: int, n_prefixes: int, seed: int = 1) -> list[list]:
    from tom_mma_broker.classifier import synthetic
    from tom_mma_broker.classifier.features import detections

    rng = np.random.default_rng(seed)
    kinds = (synthetic.KILONOVA,) + synthetic.NEGATIVE_KINDS
    curves = []
    while len(curves) < n_curves:
        obs = synthetic.make_light_curve(kinds[len(curves) % len(kinds)], rng)
        if detections(obs):
            curves.append(obs)
    result = []
    for obs in curves:
        first = next(i for i, o in enumerate(obs) if not o.upper_limit)
        ends = np.linspace(first + 1, len(obs), n_prefixes).round().astype(int)
        result += [obs[:end] for end in ends]
    return result


def throughput(lcs: list[list], batch: int) -> dict:
    from threadpoolctl import threadpool_limits

    from tom_mma_broker.classifier import load_model
    from tom_mma_broker.classifier.features import extract_features_many

    model = load_model()
    model.classify(lcs[0])  # warm up (imports, first call)
    with threadpool_limits(limits=1):
        started = time.perf_counter()
        for lc in lcs:
            model.classify(lc)
        one = time.perf_counter() - started
        started = time.perf_counter()
        for k in range(0, len(lcs), batch):
            model.classify_many([(lc, None) for lc in lcs[k : k + batch]])
        batched = time.perf_counter() - started
        started = time.perf_counter()
        for k in range(0, len(lcs), batch):
            extract_features_many([(lc, None) for lc in lcs[k : k + batch]])
        features_only = time.perf_counter() - started
    return {
        "features_per_s_batched": round(len(lcs) / features_only, 1),
        "model_version": model.version,
        "lightcurves": len(lcs),
        "lightcurves_per_s": round(len(lcs) / one, 1),
        "lightcurves_per_s_batched": round(len(lcs) / batched, 1),
        "batch": batch,
    }


def peer(lcs: list[list]) -> dict:
    import light_curve as lcf

    from tom_mma_broker.classifier.features import canonical_band

    extractor = lcf.Extractor(
        lcf.Amplitude(),
        lcf.BeyondNStd(1.0),
        lcf.LinearFit(),
        lcf.StetsonK(),
        lcf.ReducedChi2(),
        lcf.Skew(),
        lcf.Kurtosis(),
        lcf.MaximumSlope(),
    )
    started = time.perf_counter()
    computed = 0
    for lc in lcs:
        bands: dict[str, list] = {}
        for o in lc:
            if not o.upper_limit:
                bands.setdefault(canonical_band(o.band), []).append(o)
        for points in bands.values():
            if len(points) < MIN_POINTS:
                continue
            t = np.array([p.mjd for p in points])
            m = np.array([p.magnitude for p in points])
            e = np.array([p.magnitude_error or 0.1 for p in points])
            t, idx = np.unique(t, return_index=True)
            if len(t) < MIN_POINTS:
                continue
            extractor(t, m[idx], e[idx], sorted=True, check=False)
            computed += 1
    elapsed = time.perf_counter() - started
    return {
        "peer": f"light-curve {lcf.__version__}: 8 features per band with enough detections, no model",
        "peer_lightcurves_per_s": round(len(lcs) / elapsed, 1),
        "peer_band_light_curves": computed,
    }


def _stored_candidate(name: str, point_prefix: str, i: int, dec: float, lc: list):
    """A candidate and its light curve's points, in the database (set up before any timing)."""
    from tom_mma_broker.models import Candidate, CandidatePoint

    cand = Candidate.objects.create(name=name, ra=float(i % 360), dec=dec)
    CandidatePoint.objects.bulk_create(
        CandidatePoint(candidate=cand, point_id=f"{point_prefix}-{k}", mjd=o.mjd, band=o.band, magnitude=o.magnitude,
                       magnitude_error=o.magnitude_error, upper_limit=o.upper_limit)
        for k, o in enumerate(lc)
    )  # fmt: skip
    return cand


def _worker_batched(n: int, Classification) -> dict:  # noqa: N803 - a model class
    """``n`` candidates stored at once, then scored by the worker in ``classify_candidates`` tasks."""
    from tom_mma_broker.classification import BATCH_SIZE
    from tom_mma_broker.tasks import classify_candidates

    if not n:
        return {}
    pks = [
        _stored_candidate(f"bench-batch-{i}", f"b{i}", i, 1.0, lc).pk for i, lc in enumerate(light_curves(n, 1, seed=3))
    ]
    started = time.time()
    for k in range(0, n, BATCH_SIZE):
        classify_candidates.delay(pks[k : k + BATCH_SIZE])
    deadline = started + 300
    while Classification.objects.filter(candidate_id__in=pks).count() < n and time.time() < deadline:
        time.sleep(0.1)
    last = max(Classification.objects.filter(candidate_id__in=pks).values_list("created", flat=True))
    return {
        "worker_batched_candidates": n,
        "worker_batched_completed": Classification.objects.filter(candidate_id__in=pks).count() == n,
        "worker_batched_candidates_per_s": round(n / (last.timestamp() - started), 1),
    }


def latency(n: int, redis_url: str, gap: float, batched_candidates: int = 0) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="tom-mma-bench-classifier-"))
    db = f"tom_mma_benchcls_{uuid.uuid4().hex[:8]}"
    subprocess.run(["psql", PG_ADMIN, "-qc", f"CREATE DATABASE {db}"], check=True)
    # the example TOM without publishing: derived alerts (Kafka) are another benchmark's business
    (tmp / "bench_classifier_settings.py").write_text(
        "from example_tom.settings import *  # noqa: F403\n"
        'TOM_MMA_BROKER = {**TOM_MMA_BROKER, "PUBLISH_ENABLED": False}  # noqa: F405\n'
    )
    sys.path.insert(0, str(tmp))
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="bench_classifier_settings", PYTHONPATH=f"{tmp}:{ROOT}",
               DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{db}", CELERY_BROKER_URL=redis_url,
               TOM_MMA_STATE_DIR=str(tmp / "state"), TOM_MMA_LOG_LEVEL="WARNING", DJANGO_DEBUG="0")  # fmt: skip
    os.environ.update(env)
    import django

    django.setup()
    import redis
    from django.core.management import call_command

    from example_tom.celery import app

    app.conf.update(broker_url=redis_url, task_always_eager=False)
    redis.Redis.from_url(redis_url).flushdb()
    call_command("migrate", verbosity=0)
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "example_tom", "worker", "--pool=solo", "--without-gossip",
         "--without-mingle", "--without-heartbeat", "-l", "warning"],
        cwd=ROOT, env=env,
    )  # fmt: skip
    try:
        from tom_mma_broker.models import Candidate, CandidatePoint, Classification
        from tom_mma_broker.tasks import classify_candidate

        lcs = light_curves(n, 1, seed=2)
        time.sleep(3)
        # one warm-up task: the worker loads the model once
        warm = Candidate.objects.create(name="warm-up", ra=0.0, dec=0.0)
        CandidatePoint.objects.create(candidate=warm, point_id="w", mjd=60000.0, band="g", magnitude=19.0,
                                      magnitude_error=0.05, upper_limit=False)  # fmt: skip
        classify_candidate.delay(warm.pk)
        deadline = time.time() + 120
        while not Classification.objects.filter(candidate=warm).exists() and time.time() < deadline:
            time.sleep(0.05)
        enqueued: dict[int, float] = {}
        for i, lc in enumerate(lcs):
            cand = _stored_candidate(f"bench-{i}", str(i), i, 0.0, lc)
            enqueued[cand.pk] = time.time()
            classify_candidate.delay(cand.pk)
            time.sleep(gap)  # a stream of new photometry, not one burst
        deadline = time.time() + 300
        while Classification.objects.filter(candidate_id__in=enqueued).count() < len(enqueued):
            if time.time() > deadline:
                break
            time.sleep(0.2)
        rows = Classification.objects.filter(candidate_id__in=enqueued).values_list("candidate_id", "created")
        delays = [created.timestamp() - enqueued[pk] for pk, created in rows]
        worker_batched = _worker_batched(batched_candidates, Classification)
        return {
            **worker_batched,
            "latency_samples": len(delays),
            "latency_completed": len(delays) == len(enqueued),
            "p50_s": round(percentile(delays, 0.5), 4),
            "p99_s": round(percentile(delays, 0.99), 4),
            "max_s": round(max(delays), 4),
            "latency_setup": f"1 celery worker (solo pool) on Redis, PostgreSQL; a candidate every {gap} s; "
            "enqueue -> stored classification",
        }
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        from django.db import connections

        connections.close_all()
        subprocess.run(["psql", PG_ADMIN, "-qc", f"DROP DATABASE IF EXISTS {db}"], check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--curves", type=int, default=1000)
    parser.add_argument("--prefixes", type=int, default=10)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--latency-candidates", type=int, default=200, help="0: skip the worker latency")
    parser.add_argument("--latency-gap", type=float, default=0.1, help="seconds between two enqueued candidates")
    parser.add_argument(
        "--worker-batch",
        type=int,
        default=2000,
        help="candidates scored by the worker in classify_candidates tasks (0: skip)",
    )
    parser.add_argument("--redis-url", default=REDIS_URL, help=f"Celery broker (default {REDIS_URL}; emptied)")
    args = parser.parse_args()
    lcs = light_curves(args.curves, args.prefixes)
    figures = {"machine": f"{platform.machine()} {os.cpu_count()} cores", "python": platform.python_version()}
    figures.update(throughput(lcs, args.batch))
    figures.update(peer(lcs))
    figures["ratio_vs_light_curve"] = round(figures["lightcurves_per_s"] / figures["peer_lightcurves_per_s"], 3)
    figures["ratio_features_batched_vs_light_curve"] = round(
        figures["features_per_s_batched"] / figures["peer_lightcurves_per_s"], 3
    )
    if args.latency_candidates:
        figures.update(latency(args.latency_candidates, args.redis_url, args.latency_gap, args.worker_batch))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
