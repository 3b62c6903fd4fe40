"""Calibration, uncertainty and the operating point of the kilonova classifier: pure functions over tables.

The model's raw output is mapped to a probability by a logistic (Platt) fit per *evidence group* (1, 2, 3 or 4+
detections, with or without GW context), fitted on held-out simulations with both classes given equal
weight: the score is the probability that the light curve is a kilonova **under a prior of one half**
(the training mix), not the rate of kilonovae among real transients.

The uncertainty of a score (:func:`intervals`) states a claim that :mod:`.coverage` tests on held-out
simulations: the light curve's *cell* (evidence group and raw-score bin) has a kilonova probability under
the prior of one half, and the interval holds the central 90 % of its posterior given the calibration
split (a Jeffreys posterior from the distinct calibration light curves in the cell), widened to hold the
light curve's own score: wide where few simulations look like the light curve, and for one-point light
curves, whose cells hold kilonovae and contaminants alike.

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
    "cell_intervals",
    "cell_posterior_quantiles",
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
        bin ``edges``, the ``odds`` (contaminant rows per kilonova row) that weighting to the prior undoes, and
        per bin (cell) its 90 % interval ``low``/``high`` (:func:`cell_posterior_quantiles`), its distinct light
        curves ``n``, how many are ``kilonovae``, and their ``fraction`` under the prior (Jeffreys estimate).
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
        # the odds factor that weights the group's classes equally (the prior of one half)
        odds = float((t == 0).sum() / max((t == 1).sum(), 1))
        low, high, count, kilonovae, fraction = [], [], [], [], []
        for k in range(len(edges) - 1):
            in_bin = (r >= edges[k]) & ((r < edges[k + 1]) | (k == len(edges) - 2))
            # one vote per light curve: its prefixes in one bin are not independent draws (its label is one)
            label_of = dict(zip(c[in_bin].tolist(), t[in_bin].tolist(), strict=True))
            n, n_kn = len(label_of), int(sum(label_of.values()))
            lo, hi = cell_posterior_quantiles(n_kn, n, odds, np.array([(1 - _LEVEL) / 2, 1 - (1 - _LEVEL) / 2]))
            low.append(float(lo))
            high.append(float(hi))
            count.append(n)
            kilonovae.append(n_kn)
            fraction.append(float(_to_prior((n_kn + 0.5) / (n + 1.0), odds)))
        tables["groups"][name] = {
            "platt": [float(a), float(b)],
            "x": [float(v) for v in knots],
            "y": [float(v) for v in iso_y],
            "edges": [float(v) for v in edges],
            "low": low,
            "high": high,
            "n": count,
            "kilonovae": kilonovae,
            "odds": odds,
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


def _to_prior(fraction: np.ndarray | float, odds: float) -> np.ndarray:
    """A kilonova fraction among simulations with ``odds`` contaminants per kilonova, re-weighted to one half."""
    f = np.asarray(fraction, dtype=float)
    return odds * f / (odds * f + (1.0 - f))


def _from_prior(fraction: np.ndarray | float, odds: float) -> np.ndarray:
    """The inverse of :func:`_to_prior`: the fraction expected with ``odds`` contaminants per kilonova."""
    f = np.asarray(fraction, dtype=float)
    return f / (f + odds * (1.0 - f))


def cell_posterior_quantiles(kilonovae: int, n: int, odds: float, q: np.ndarray) -> np.ndarray:
    """Quantiles of the posterior of a cell's kilonova probability under the prior of one half.

    The cell holds ``n`` distinct simulated light curves, ``kilonovae`` of them kilonovae, drawn with
    ``odds`` contaminants per kilonova: the fraction they were drawn from has the Jeffreys posterior
    Beta(k + 1/2, n - k + 1/2), mapped (monotonically) to equal class weights.

    Examples
    --------
    >>> lo, hi = cell_posterior_quantiles(5, 10, 1.0, np.array([0.05, 0.95]))
    >>> round(float(lo), 3), round(float(hi), 3)
    (0.262, 0.738)
    """
    from scipy.special import betaincinv  # the Beta quantile, without scipy.stats' per-call overhead

    return _to_prior(betaincinv(kilonovae + 0.5, n - kilonovae + 0.5, np.asarray(q, dtype=float)), odds)


def _cell_of(table: Mapping[str, Any], raw: np.ndarray) -> np.ndarray:
    k = np.searchsorted(table["edges"], raw, side="right") - 1
    return np.clip(k, 0, len(table["low"]) - 1)


def intervals(
    tables: Mapping[str, Any], raw: np.ndarray, groups: Sequence[str], scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The 90 % intervals of the kilonova probabilities of several light curves, at once.

    The claim: a light curve's **cell** (its evidence group and raw-score bin) has a kilonova probability,
    under the prior of one half, the fraction of kilonovae among all simulated light curves that fall in
    it; the interval is the central 90 % of that probability's posterior given the calibration split's
    light curves in the cell (:func:`cell_posterior_quantiles`), widened to hold the light curve's own
    calibrated score where the smooth (Platt) curve lies outside it. So it contains the cell's probability
    at least 90 % of the time; :func:`coverage_test` checks it on held-out simulations. ``(0, 1)`` for a
    group without a table.

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
    low, high = cell_intervals(tables, raw, groups)
    scores = np.asarray(scores, dtype=float)
    return np.minimum(low, scores), np.maximum(high, scores)


def cell_intervals(tables: Mapping[str, Any], raw: np.ndarray, groups: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """The 90 % intervals of the cells (evidence group, raw-score bin) of several light curves.

    ``(0, 1)`` for a group without a table; :func:`intervals` widens them to hold each light curve's score.
    """
    raw = np.asarray(raw, dtype=float)
    groups_arr = np.asarray(groups)
    low, high = np.zeros(len(raw)), np.ones(len(raw))
    for name, table in tables.get("groups", {}).items():
        sel = np.flatnonzero(groups_arr == name)
        if len(sel) == 0:
            continue
        k = _cell_of(table, raw[sel])
        low[sel] = np.asarray(table["low"], dtype=float)[k]
        high[sel] = np.asarray(table["high"], dtype=float)[k]
    return low, high


def interval(tables: Mapping[str, Any], raw: float, group: str, score: float | None = None) -> tuple[float, float]:
    """The 90 % interval of the kilonova probability of one light curve (``(0, 1)`` where unknown).

    :func:`intervals` of one light curve; without a score, its cell's interval alone.
    """
    table = tables.get("groups", {}).get(group)
    if table is None:
        return 0.0, 1.0
    if score is None:
        k = int(_cell_of(table, np.array([raw]))[0])
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
