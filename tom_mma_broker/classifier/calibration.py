"""Calibration, uncertainty and the operating point of the kilonova classifier: pure functions over tables.

The model's raw output is mapped to a probability by a logistic (Platt) fit per *evidence group* (1, 2, 3 or 4+
detections, with or without GW context), fitted on held-out simulations with both classes given equal
weight: the score is the probability that the light curve is a kilonova **under a prior of one half**
(the training mix), not the rate of kilonovae among real transients.

The uncertainty of a score is a 90 % Jeffreys (Beta) interval around it, the binomial uncertainty of a
fraction measured on as many simulated light curves as the calibration split has in the same group and
raw-score bin (each curve counted once however many of its prefixes fall in the bin): wide where few
simulations look like the light curve, and for one-point light curves, whose scores sit mid-range.

The operating point (:func:`decide`) says when a light curve is a candidate: a calibrated score at least
the threshold chosen on held-out simulated supernovae, and enough evidence: never a single detection (or
a single epoch) without GW context; with GW context a single epoch only within a day of the merger, at a
kilonova-like absolute magnitude and inside the credible region.

All tables are plain lists of floats, stored in the artifact's metadata.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "GROUPS",
    "Decision",
    "apply_calibration",
    "decide",
    "fit_calibration",
    "group_of",
    "interval",
    "intervals",
]

GROUPS = ("1", "2", "3", "4+", "1/gw", "2/gw", "3/gw", "4+/gw")
"""Evidence groups: number of detections, and whether GW context was used."""

_N_BINS = 12
_LEVEL = 0.90


def group_of(features: Mapping[str, float | None]) -> str:
    """The evidence group of a feature row.

    Examples
    --------
    >>> group_of({"n_detections": 1.0, "days_since_merger_first": None})
    '1'
    >>> group_of({"n_detections": 7.0, "days_since_merger_first": 0.4})
    '4+/gw'
    """
    n = features.get("n_detections") or 0.0
    name = "4+" if n >= 4 else str(int(max(n, 1)))
    since = features.get("days_since_merger_first")
    has_context = since is not None and not (isinstance(since, float) and math.isnan(since))
    return name + ("/gw" if has_context else "")


def _weights(y: np.ndarray) -> np.ndarray:
    w = np.ones(len(y))
    for label in (0, 1):
        sel = y == label
        if sel.any():
            w[sel] = 0.5 * len(y) / sel.sum()
    return w


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(np.asarray(p, dtype=float), 1e-6, 1 - 1e-6)
    return np.log(q / (1 - q))


def _platt(z: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """Weighted logistic regression of y on z (Newton steps, a tiny ridge): slope and intercept."""
    a, b = 1.0, 0.0
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-(a * z + b)))
        g = np.array([np.dot(w, (p - y) * z), np.dot(w, p - y)]) + 1e-3 * np.array([a - 1.0, b])
        s = w * p * (1 - p)
        h = np.array([[np.dot(s, z * z), np.dot(s, z)], [np.dot(s, z), s.sum()]]) + 1e-3 * np.eye(2)
        step = np.linalg.solve(h, g)
        a, b = a - float(step[0]), b - float(step[1])
        if float(np.max(np.abs(step))) < 1e-10:
            break
    return a, b


def fit_calibration(
    raw: np.ndarray, y: np.ndarray, groups: Sequence[str], curves: Sequence[int] | None = None
) -> dict[str, Any]:
    """Fit the calibration tables on held-out rows.

    Parameters
    ----------
    raw
        Raw model probabilities.
    y
        1 for a kilonova, 0 otherwise.
    groups
        :func:`group_of` of each row.
    curves
        Which light curve each row comes from: rows of one curve are not independent, so an interval
        counts the distinct curves of its bin, not its rows. None: every row its own curve.

    Returns
    -------
    dict
        Per group: the Platt coefficients, the calibrated curve tabulated at knots ``x``/``y``, raw-score
        bin ``edges`` and each bin's ``low``/``high`` interval, light-curve count ``n`` and ``fraction``.
    """
    groups_arr = np.asarray(groups)
    curves_arr = np.arange(len(y)) if curves is None else np.asarray(curves)
    tables: dict[str, Any] = {"prior": 0.5, "level": _LEVEL, "groups": {}}
    for name in GROUPS:
        sel = groups_arr == name
        if sel.sum() < 20 or len(set(y[sel].tolist())) < 2:
            continue
        r, t, c = raw[sel], y[sel], curves_arr[sel]
        w = _weights(t)
        # a logistic (Platt) fit on the logit of the raw score: two numbers per group, smooth and monotonic,
        # less noisy than an isotonic fit on a few hundred light curves
        z = _logit(r)
        a, b = _platt(z, t, w)
        knots = np.linspace(0.0, 1.0, 101)
        iso_y = 1.0 / (1.0 + np.exp(-(a * _logit(knots) + b)))
        edges = np.unique(np.quantile(r, np.linspace(0.0, 1.0, _N_BINS + 1)))
        edges[0], edges[-1] = 0.0, 1.0
        low, high, count, fraction = [], [], [], []
        for k in range(len(edges) - 1):
            in_bin = (r >= edges[k]) & ((r < edges[k + 1]) | (k == len(edges) - 2))
            rows = int(in_bin.sum())
            n = len(set(c[in_bin].tolist()))
            # the calibrated score of the bin (weighted mean) as counts of n independent draws (Jeffreys prior)
            cal = 1.0 / (1.0 + np.exp(-(a * z[in_bin] + b)))
            frac = float(np.dot(w[in_bin], cal) / w[in_bin].sum()) if rows else 0.5
            lo, hi = _beta_interval(frac, n)
            low.append(lo)
            high.append(hi)
            count.append(n)
            fraction.append(frac)
        tables["groups"][name] = {
            "platt": [float(a), float(b)],
            "x": [float(v) for v in knots],
            "y": [float(v) for v in iso_y],
            "edges": [float(v) for v in edges],
            "low": low,
            "high": high,
            "n": count,
            "fraction": fraction,
        }
    return tables


def apply_calibration(tables: Mapping[str, Any], raw: np.ndarray, groups: Sequence[str]) -> np.ndarray:
    """Calibrated probabilities of raw scores (a group without a table keeps its raw score)."""
    out = np.array(raw, dtype=float)
    groups_arr = np.asarray(groups)
    for name, table in tables.get("groups", {}).items():
        sel = groups_arr == name
        if sel.any():
            out[sel] = np.interp(out[sel], table["x"], table["y"])
    return out


def _beta_intervals(p: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from scipy.special import betaincinv  # the Beta quantile, without scipy.stats' per-call overhead

    a, b = p * n + 0.5, (1 - p) * n + 0.5
    return betaincinv(a, b, (1 - _LEVEL) / 2), betaincinv(a, b, 1 - (1 - _LEVEL) / 2)


def _beta_interval(p: float, n: int) -> tuple[float, float]:
    low, high = _beta_intervals(np.array([float(p)]), np.array([float(n)]))
    return float(low[0]), float(high[0])


def intervals(
    tables: Mapping[str, Any], raw: np.ndarray, groups: Sequence[str], scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The 90 % intervals of the kilonova probabilities of several light curves, at once.

    Per light curve, a Jeffreys interval around its calibrated score, as if it were a fraction measured on
    as many distinct calibration light curves as its group's raw-score bin holds: the fewer simulations
    look like it, the wider; ``(0, 1)`` for a group without a table.

    Parameters
    ----------
    tables
        The calibration tables (:func:`fit_calibration`).
    raw, groups, scores
        Per light curve: the raw model output, the evidence group (:func:`group_of`), the calibrated score.

    Returns
    -------
    (low, high)
        Two arrays, one bound per light curve.
    """
    raw = np.asarray(raw, dtype=float)
    scores = np.asarray(scores, dtype=float)
    groups_arr = np.asarray(groups)
    low, high = np.zeros(len(raw)), np.ones(len(raw))
    for name, table in tables.get("groups", {}).items():
        sel = np.flatnonzero(groups_arr == name)
        if len(sel) == 0:
            continue
        k = np.searchsorted(table["edges"], raw[sel], side="right") - 1
        k = np.clip(k, 0, len(table["low"]) - 1)
        low[sel], high[sel] = _beta_intervals(scores[sel], np.asarray(table["n"], dtype=float)[k])
    return low, high


def interval(tables: Mapping[str, Any], raw: float, group: str, score: float | None = None) -> tuple[float, float]:
    """The 90 % interval of the kilonova probability of one light curve (``(0, 1)`` where unknown).

    A Jeffreys interval around the calibrated ``score`` (:func:`intervals` of one light curve); without a
    score, the bin's interval around its mean calibrated score.
    """
    table = tables.get("groups", {}).get(group)
    if table is None:
        return 0.0, 1.0
    if score is None:
        k = int(np.searchsorted(table["edges"], raw, side="right")) - 1
        k = min(max(k, 0), len(table["low"]) - 1)
        return float(table["low"][k]), float(table["high"][k])
    low, high = intervals(tables, np.array([raw]), [group], np.array([score]))
    return float(low[0]), float(high[0])


@dataclass(frozen=True)
class Decision:
    """Whether a light curve passes the classifier's operating point, and why."""

    is_candidate: bool
    reason: str


def decide(score: float, features: Mapping[str, float | None], operating_point: Mapping[str, Any]) -> Decision:
    """Apply the operating point to a calibrated score and its features.

    Parameters
    ----------
    score
        Calibrated kilonova probability.
    features
        The light curve's features (``None`` or ``nan`` where undefined).
    operating_point
        The artifact's ``operating_point``: ``threshold``, ``threshold_gw``, ``min_detections``, and for a
        single detection with GW context ``single_max_days_since_merger``, ``single_abs_mag_range``,
        ``single_max_credible_level``.

    Examples
    --------
    >>> op = {"threshold": 0.9, "threshold_gw": 0.8, "min_detections": 2, "min_span_days": 0.1,
    ...       "single_max_days_since_merger": 1.0, "single_abs_mag_range": [-17.5, -13.5],
    ...       "single_max_credible_level": 0.9}
    >>> decide(0.99, {"n_detections": 1.0, "span_days": 0.0}, op).is_candidate
    False
    >>> decide(0.99, {"n_detections": 3.0, "span_days": 1.2}, op).reason
    'score 0.990 >= 0.900; 3 detections over 1.20 d'
    >>> decide(0.85, {"n_detections": 1.0, "span_days": 0.0, "days_since_merger_first": 0.5,
    ...               "abs_mag_peak": -15.5, "credible_level": 0.4}, op).reason
    'score 0.850 >= 0.800 with GW context; a single detection 0.50 d after the merger at M = -15.5, level 0.40'
    """

    def value(name: str) -> float | None:
        v = features.get(name)
        return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)

    n_det = int(value("n_detections") or 0)
    span = value("span_days") or 0.0
    since = value("days_since_merger_first")
    with_gw = since is not None
    threshold = float(operating_point["threshold_gw" if with_gw else "threshold"])
    context = " with GW context" if with_gw else ""
    if score < threshold:
        return Decision(False, f"score {score:.3f} below {threshold:.3f}{context}")
    min_span = float(operating_point["min_span_days"])
    if n_det >= int(operating_point["min_detections"]) and span >= min_span:
        return Decision(True, f"score {score:.3f} >= {threshold:.3f}{context}; {n_det} detections over {span:.2f} d")
    epoch = f"{n_det} detection(s) within {span:.2f} d" if n_det > 1 else "a single detection"
    if not with_gw:
        return Decision(
            False,
            f"score {score:.3f} but {epoch} and no GW context: at least {operating_point['min_detections']} "
            f"detections over {min_span:g} d or more are needed",
        )
    abs_mag, level = value("abs_mag_peak"), value("credible_level")
    low, high = operating_point["single_abs_mag_range"]
    problems = []
    if since > float(operating_point["single_max_days_since_merger"]):
        problems.append(f"{since:.2f} d after the merger")
    if abs_mag is None or not (low <= abs_mag <= high):
        problems.append(
            "absolute magnitude unknown" if abs_mag is None else f"M = {abs_mag:.1f} outside [{low}, {high}]"
        )
    if level is None or level > float(operating_point["single_max_credible_level"]):
        problems.append("credible level unknown" if level is None else f"credible level {level:.2f}")
    if problems:
        return Decision(False, f"score {score:.3f} but {epoch}{context}: " + ", ".join(problems))
    return Decision(
        True,
        f"score {score:.3f} >= {threshold:.3f}{context}; {epoch} {since:.2f} d after the merger "
        f"at M = {abs_mag:.1f}, level {level:.2f}",
    )
