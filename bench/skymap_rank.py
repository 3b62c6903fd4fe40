"""Benchmark: rank 1,000,000 positions against the MS181101ab multi-order sky map.

Ours (:meth:`tom_mma.gw.skymaps.MultiOrderSkyMap.rank`) against ``ligo.skymap.postprocess.crossmatch`` on the
same positions, in the same run; each side runs in its own fresh process so that its peak memory (max RSS,
interpreter and imports included) is its own. Also checks that both give the same numbers: ``probdensity``
bit for bit, ``searched_prob`` to rounding, and the conditional distance against
``ligo.skymap.distance.parameters_to_moments``.

The comparison needs the ``bench`` extra (``pip install -e '.[bench]'``, i.e. ligo.skymap). Without it (or
with ``--no-ligo``) ours is still measured, and the JSON says why there is no comparison: ``ligo_skymap_seconds``
and ``ratio_vs_ligo_skymap`` are null and ``ligo_skymap_missing`` gives the reason. Run::

    .venv/bin/python bench/skymap_rank.py [--n 1000000] [--repeat 3]

Both sides run ``--repeat`` times (reading the sky map afresh each time) and report the median. The last line
printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import importlib
import json
import multiprocessing as mp
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
NOTICE = ROOT / "tests" / "data" / "lvk" / "MS181101ab-preliminary.avro"
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))


def _skymap_bytes() -> bytes:
    import fastavro

    with open(NOTICE, "rb") as f:
        return next(fastavro.reader(f))["event"]["skymap"]


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _ours(positions_file: str, out_file: str, repeat: int) -> None:
    from tom_mma.gw.skymaps import read_multiorder

    data = _skymap_bytes()
    ra, dec = np.load(positions_file)
    walls, cpus, rank_walls = [], [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        skymap = read_multiorder(data)  # a fresh map each time: parse, validate, sort, levels included
        t1 = time.perf_counter()
        ranking = skymap.rank(ra, dec)
        t2, c2 = time.perf_counter(), time.process_time()
        walls.append(t2 - t0)
        cpus.append(c2 - c0)
        rank_walls.append(t2 - t1)
    np.savez(
        out_file,
        probdensity=ranking.probdensity,
        credible_level=ranking.credible_level,
        distance_mean=ranking.distance_mean,
        distance_std=ranking.distance_std,
        timing=np.array([statistics.median(walls), statistics.median(cpus), statistics.median(rank_walls)]),
        peak_mb=np.array(_peak_rss_mb()),
    )


def _ligo(positions_file: str, out_file: str, repeat: int) -> None:
    import astropy.units as u
    from astropy.coordinates import SkyCoord
    from ligo.skymap import distance, moc
    from ligo.skymap.io import read_sky_map
    from ligo.skymap.postprocess.crossmatch import crossmatch

    ra, dec = np.load(positions_file)
    walls, cpus = [], []
    with tempfile.NamedTemporaryFile(suffix=".fits") as f:
        f.write(_skymap_bytes())
        f.flush()
        for _ in range(repeat):  # as for ours: read the map afresh each time, report the median
            t0, c0 = time.perf_counter(), time.process_time()
            table = read_sky_map(f.name, moc=True)
            result = crossmatch(table, SkyCoord(ra * u.deg, dec * u.deg))
            t1, c1 = time.perf_counter(), time.process_time()
            walls.append(t1 - t0)
            cpus.append(c1 - c0)
    # the reference conditional distance at each position: its pixel's moments by ligo.skymap
    order, ipix = moc.uniq2nest(table["UNIQ"])
    mean, std, _ = distance.parameters_to_moments(table["DISTMU"], table["DISTSIGMA"])
    np.savez(
        out_file,
        probdensity=np.asarray(result.probdensity),
        searched_prob=np.asarray(result.searched_prob),
        uniq=np.asarray(table["UNIQ"]),
        mean=np.asarray(mean),
        std=np.asarray(std),
        timing=np.array([statistics.median(walls), statistics.median(cpus)]),
        peak_mb=np.array(_peak_rss_mb()),
    )


def _ligo_missing() -> str | None:
    """Why ligo.skymap cannot be compared here, or None when it imports (checked before the long run)."""
    try:
        importlib.import_module("ligo.skymap.postprocess.crossmatch")
    except ImportError as exc:
        return f"{type(exc).__name__}: {exc} (install the bench extra: pip install -e '.[bench]')"
    return None


def _run(target, *args) -> None:
    process = mp.get_context("spawn").Process(target=target, args=args)
    process.start()
    process.join()
    if process.exitcode != 0:
        raise SystemExit(f"{target.__name__} failed with exit code {process.exitcode}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="number of positions")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each side (the median is reported)")
    parser.add_argument("--no-ligo", action="store_true", help="skip ligo.skymap")
    args = parser.parse_args()
    missing = "skipped (--no-ligo)" if args.no_ligo else _ligo_missing()

    rng = np.random.default_rng(1101)
    ra = rng.uniform(0, 360, args.n)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, args.n)))
    with tempfile.TemporaryDirectory() as tmp:
        positions = os.path.join(tmp, "positions.npy")
        np.save(positions, np.vstack([ra, dec]))
        ours_file, ligo_file = os.path.join(tmp, "ours.npz"), os.path.join(tmp, "ligo.npz")
        _run(_ours, positions, ours_file, args.repeat)
        ours = dict(np.load(ours_file))
        figures = {
            "benchmark": "skymap_rank",
            "positions": args.n,
            "skymap": "MS181101ab-preliminary (BAYESTAR, 19200 UNIQ pixels, max order 11)",
            "seconds": round(float(ours["timing"][0]), 4),
            "cpu_seconds": round(float(ours["timing"][1]), 4),
            "rank_seconds": round(float(ours["timing"][2]), 4),
            "peak_mb": round(float(ours["peak_mb"]), 1),
            "cores": os.cpu_count(),
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
            "python": platform.python_version(),
        }
        if missing is not None:
            figures.update({"ligo_skymap_seconds": None, "ratio_vs_ligo_skymap": None, "ligo_skymap_missing": missing})
        else:
            import ligo.skymap

            _run(_ligo, positions, ligo_file, args.repeat)
            ref = dict(np.load(ligo_file))
            finite = np.isfinite(ours["distance_mean"])
            # the reference distance at each position: ligo's moments of the pixel ours found
            from tom_mma.gw.skymaps import read_multiorder

            skymap = read_multiorder(_skymap_bytes())
            rows = skymap.locate(ra, dec)
            order = np.argsort(ref["uniq"])
            ref_rows = order[np.searchsorted(ref["uniq"][order], skymap.uniq[rows])]
            ref_mean, ref_std = ref["mean"][ref_rows], ref["std"][ref_rows]
            figures.update(
                {
                    "ligo_skymap_version": ligo.skymap.__version__,
                    "ligo_skymap_seconds": round(float(ref["timing"][0]), 4),
                    "ligo_skymap_cpu_seconds": round(float(ref["timing"][1]), 4),
                    "ligo_skymap_peak_mb": round(float(ref["peak_mb"]), 1),
                    "ratio_vs_ligo_skymap": round(float(ref["timing"][0] / ours["timing"][0]), 1),
                    "cpu_ratio_vs_ligo_skymap": round(float(ref["timing"][1] / ours["timing"][1]), 1),
                    "probdensity_identical": bool(np.array_equal(ours["probdensity"], ref["probdensity"])),
                    "searched_prob_max_abs_diff": float(np.max(np.abs(ours["credible_level"] - ref["searched_prob"]))),
                    "distance_mean_max_rel_diff": float(
                        np.max(np.abs(ours["distance_mean"][finite] / ref_mean[finite] - 1))
                    ),
                    "distance_std_max_rel_diff": float(
                        np.max(np.abs(ours["distance_std"][finite] / ref_std[finite] - 1))
                    ),
                }
            )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
