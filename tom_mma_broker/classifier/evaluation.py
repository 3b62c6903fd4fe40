"""Replaying light curves point by point, and the held-out figures of a training run.

:func:`replay` scores a light curve after each new point, as the broker sees it; the rest is what
:mod:`~tom_mma_broker.classifier.training` measures on the calibration and test splits (the supernovae's
replays that choose the operating point, the synthetic test figures, the reliability curve and the
intervals' coverage). Features of many prefixes are computed in one batch
(:func:`~tom_mma_broker.classifier.features.extract_features_many`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .calibration import apply_calibration, cell_intervals, decide, group_of, intervals
from .coverage import coverage_test
from .features import FEATURE_NAMES, GW_FEATURE_NAMES, GWContext, Observation, detections, extract_features_many
from .model import KilonovaModel
from .synthetic import KILONOVA, Example

__all__ = ["EVAL_DAYS", "replay", "score_trajectory"]

EVAL_DAYS = (1.0, 2.0, 3.0, 5.0, 10.0)
"""Days since the first detection at which the synthetic test figures are taken."""


def _feature_rows(curves: Sequence[tuple[Sequence[Observation], GWContext | None]]) -> list[dict[str, float]]:
    """The features of each light curve as a dict (one batch)."""
    batch = extract_features_many(curves)
    return [batch.row(k) for k in range(len(curves))]


def _first_detection_index(observations: Sequence[Observation]) -> int | None:
    return next((n for n, obs in enumerate(observations) if detections([obs])), None)


def _without_context(row: dict[str, float]) -> dict[str, float]:
    return {**row, **dict.fromkeys(GW_FEATURE_NAMES, math.nan)}


def _matrix(rows: Sequence[dict[str, float]]) -> np.ndarray:
    return np.array([[row[name] for name in FEATURE_NAMES] for row in rows], dtype=float).reshape(
        len(rows), len(FEATURE_NAMES)
    )


def replay(
    model: KilonovaModel | Any,
    observations: Sequence[Observation],
    context: GWContext | None = None,
    *,
    until_days: float | None = None,
) -> list[tuple[int, float, float, bool]]:
    """Score a light curve as the broker sees it, after each new point.

    ``(points so far, days since the first detection, score, is_candidate)``; nothing before the first
    detection.

    ``model`` is a :class:`KilonovaModel`, or anything with ``predict_proba`` and ``metadata``.
    """
    ordered = sorted(observations, key=lambda o: o.mjd)
    first = _first_detection_index(ordered)
    if first is None:
        return []
    t0 = ordered[first].mjd
    ends = [
        e for e in range(first + 1, len(ordered) + 1) if until_days is None or ordered[e - 1].mjd - t0 <= until_days
    ]
    rows = _feature_rows([(ordered[:end], context) for end in ends])
    if not rows:
        return []
    scores = model.predict_proba(rows)
    op = model.metadata["operating_point"]
    out = []
    for end, row, score in zip(ends, rows, scores, strict=True):
        clean = {k: (None if math.isnan(v) else v) for k, v in row.items()}
        out.append((end, ordered[end - 1].mjd - t0, float(score), decide(float(score), clean, op).is_candidate))
    return out


def score_trajectory(model: KilonovaModel, observations: Sequence[Observation]) -> list[tuple[Observation, int, float]]:
    """Replay a light curve one point at a time: ``(point, detections so far, score)`` after each point.

    Points before the first detection are skipped (there is nothing to score yet).
    """
    ordered = sorted(observations, key=lambda o: o.mjd)
    result = []
    for end, _, score, _ in replay(model, ordered):
        result.append((ordered[end - 1], len(detections(ordered[:end])), score))
    return result


class _Scorer:
    """The estimator with calibration tables, before the artifact exists (same interface as the model)."""

    def __init__(self, estimator: Any, metadata: dict[str, Any]) -> None:
        self.estimator, self.metadata = estimator, metadata

    def raw_proba(self, rows: Sequence[dict[str, float]]) -> np.ndarray:
        return self.estimator.predict_proba(_matrix(rows))[:, 1]

    def predict_proba(self, rows: Sequence[dict[str, float]]) -> np.ndarray:
        raw = self.raw_proba(rows)
        return apply_calibration(self.metadata.get("calibration", {}), raw, [group_of(r) for r in rows])


def _early_replays(
    scorer: _Scorer, examples: Sequence[Example], early_days: float, evidence_rules: dict[str, Any]
) -> dict[bool, list[tuple[np.ndarray, np.ndarray]]]:
    """Per example, with and without context: the scores and evidence-rule eligibility of every prefix."""
    out: dict[bool, list[tuple[np.ndarray, np.ndarray]]] = {False: [], True: []}
    rules = {**evidence_rules, "threshold": 0.0, "threshold_gw": 0.0}
    for example in examples:
        obs = example.observations
        first = _first_detection_index(obs)
        t0 = obs[first].mjd
        ends = [e for e in range(first + 1, len(obs) + 1) if obs[e - 1].mjd - t0 <= early_days]
        with_ctx = _feature_rows([(obs[:end], example.context) for end in ends])
        for gw, rows in ((True, with_ctx), (False, [_without_context(r) for r in with_ctx])):
            scores = scorer.predict_proba(rows)
            eligible = np.array(
                [
                    decide(1.0, {k: (None if math.isnan(v) else v) for k, v in r.items()}, rules).is_candidate
                    for r in rows
                ]
            )
            out[gw].append((scores, eligible))
    return out


def _choose_threshold(replays: list[tuple[np.ndarray, np.ndarray]], target: float) -> float:
    """The smallest threshold (>= 0.5, on a 0.001 grid) at which at most ``target`` of the curves pass."""
    best = np.array([float(np.max(np.where(e, s, 0.0))) if len(s) else 0.0 for s, e in replays])
    for threshold in np.round(np.arange(0.5, 1.0, 0.001), 3):
        if np.mean(best >= threshold) <= target:
            return float(threshold)
    return 0.999


def _prefix_at(observations: Sequence[Observation], days: float) -> list[Observation]:
    first = _first_detection_index(observations)
    t0 = observations[first].mjd
    return [o for o in observations if o.mjd <= t0 + days]


def _synthetic_metrics(scorer: _Scorer, test: Sequence[Example]) -> dict[str, Any]:
    """The synthetic test set's figures, per kind and day since the first detection, with and without context.

    Passing fractions; precision, recall and false-positive rate of kilonovae; reliability and interval
    coverage.
    """
    from sklearn.metrics import roc_auc_score

    op = scorer.metadata["operating_point"]
    kinds = np.array([e.kind for e in test])
    by_day: dict[str, Any] = {}
    for days in EVAL_DAYS:
        ctx_rows = _feature_rows([(_prefix_at(e.observations, days), e.context) for e in test])
        for gw, rows in (("gw", ctx_rows), ("no_gw", [_without_context(r) for r in ctx_rows])):
            scores = scorer.predict_proba(rows)
            passed = np.array(
                [
                    decide(float(s), {k: (None if math.isnan(v) else v) for k, v in r.items()}, op).is_candidate
                    for s, r in zip(scores, rows, strict=True)
                ]
            )
            y = kinds == KILONOVA
            tp, fp = int((passed & y).sum()), int((passed & ~y).sum())
            entry = {
                "kilonovae": int(y.sum()),
                "contaminants": int((~y).sum()),
                "recall": round(tp / max(int(y.sum()), 1), 4),
                "false_positive_rate": round(fp / max(int((~y).sum()), 1), 4),
                "precision": round(tp / (tp + fp), 4) if tp + fp else None,
                "auc": round(float(roc_auc_score(y, scores)), 4),
                "passing_by_kind": {k: round(float(passed[kinds == k].mean()), 4) for k in sorted(set(kinds.tolist()))},
            }
            by_day[f"{days:g}d_{gw}"] = entry
    return {"curves": len(test), "by_day": by_day}


def _reliability(
    scorer: _Scorer, rows: Sequence[dict[str, float]], y: np.ndarray, curves: np.ndarray
) -> dict[str, Any]:
    """Reliability curve and the test of the stated 90 % intervals on held-out rows (:mod:`.coverage`).

    The curve has 10 bins of calibrated score, classes weighted to the prior.
    """
    scores = scorer.predict_proba(rows)
    raw = scorer.raw_proba(rows)
    groups = [group_of(r) for r in rows]
    w_pos, w_neg = 0.5 / max((y == 1).mean(), 1e-9), 0.5 / max((y == 0).mean(), 1e-9)
    w = np.where(y == 1, w_pos, w_neg)
    curve = []
    edges = np.linspace(0, 1, 11)
    for k in range(10):
        sel = (scores >= edges[k]) & ((scores < edges[k + 1]) | (k == 9))
        if sel.sum():
            curve.append(
                {
                    "bin": [round(float(edges[k]), 2), round(float(edges[k + 1]), 2)],
                    "rows": int(sel.sum()),
                    "mean_score": round(float(np.average(scores[sel], weights=w[sel])), 4),
                    "kilonova_fraction": round(float(np.average(y[sel], weights=w[sel])), 4),
                }
            )
    # the stated intervals, tested on these held-out rows (coverage.py); and how often a score lies outside
    # its cell's interval (the reported interval is then widened to hold it)
    calibration = scorer.metadata["calibration"]
    test = coverage_test(calibration, raw, groups, y, curves)
    low, high = intervals(calibration, raw, groups, scores)
    cell_low, cell_high = cell_intervals(calibration, raw, groups)
    known = np.isin(np.asarray(groups), list(calibration["groups"]))
    return {
        "curve": curve,
        "interval_level": calibration["level"],
        "interval_cells": test["cells"],
        "interval_cells_covering": test["covering"],
        "interval_cells_expected": test["expected"],
        "interval_p_value": test["p_value"],
        "interval_significance": test["significance"],
        "interval_test_passes": test["passes"],
        "interval_per_cell": test["per_cell"],
        "score_outside_cell_interval": round(float(np.mean(((scores < cell_low) | (scores > cell_high))[known])), 4),
        "median_interval_width": {
            g: round(float(np.median((high - low)[np.asarray(groups) == g])), 4)
            for g in sorted(set(groups))
            if g in calibration["groups"]
        },
    }
