"""The test of the stated intervals on held-out simulations (:func:`coverage_test`).

What an interval claims (:func:`~tom_mma_broker.classifier.calibration.intervals`): the light curve's cell
(evidence group and raw-score bin) has a kilonova probability under the prior of one half, and the
interval holds the central 90 % of its posterior given the calibration split. Held-out light curves of
the same simulation that fall in the cell are fresh draws from that probability, so the claim predicts the
distribution of their kilonova count: the binomial of the cell's probability, averaged over its posterior
(and over the held-out set's own class mix). Per cell the test asks whether the held-out count lies in the
central 90 % of that predictive distribution (by its mid-distribution value, so discreteness costs
nothing); under the claim the number of such cells follows a Poisson-binomial distribution with known
probabilities (about 0.9 each), and the claim is rejected when the number seen is in either 0.5 % tail
(two-sided, significance 1 %). Cells are treated as independent; they are nearly so (one light curve's
prefixes may fall in a few cells).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .calibration import _cell_of, _from_prior, _to_prior, cell_posterior_quantiles

__all__ = ["coverage_test"]

_GRID = 2000


def _predictive(kilonovae: int, n: int, odds: float, odds_test: float, n_test: int) -> np.ndarray:
    """The distribution of a cell's held-out kilonova count under the claim (quadrature over the posterior)."""
    from scipy.stats import binom

    q = (np.arange(_GRID) + 0.5) / _GRID
    theta = _from_prior(cell_posterior_quantiles(kilonovae, n, odds, q), odds_test)
    return binom.pmf(np.arange(n_test + 1)[None, :], n_test, theta[:, None]).mean(axis=0)


def _poisson_binomial(p: Sequence[float]) -> np.ndarray:
    dist = np.array([1.0])
    for prob in p:
        dist = np.convolve(dist, [1.0 - prob, prob])
    return dist


def coverage_test(
    tables: Mapping[str, Any],
    raw: np.ndarray,
    groups: Sequence[str],
    y: np.ndarray,
    curves: Sequence[int],
    *,
    min_curves: int = 10,
    significance: float = 0.01,
) -> dict[str, Any]:
    """Test the calibration tables' intervals on held-out simulated rows.

    Parameters
    ----------
    tables
        The calibration tables (:func:`~tom_mma_broker.classifier.calibration.fit_calibration`).
    raw, groups, y, curves
        Per held-out row: the raw model output, the evidence group, 1 for a kilonova, and which light curve it
        comes from (each curve counts once per cell).
    min_curves
        Cells with fewer held-out light curves are left out.
    significance
        The test's two-sided significance.

    Returns
    -------
    dict
        ``level``, ``cells``, ``covering`` (cells whose held-out count is inside the central interval of its
        predictive distribution), ``expected`` (that number's mean under the claim), ``p_value`` (two-sided,
        Poisson-binomial), ``significance``, ``passes``, and ``per_cell``: the group, bin, stated interval,
        held-out and calibration ``[curves, kilonovae]``, the held-out fraction under the prior of one half,
        its mid-distribution value under the predictive distribution (``pit``) and whether it covers.
    """
    level = float(tables.get("level", 0.9))
    tail = (1.0 - level) / 2
    raw = np.asarray(raw, dtype=float)
    y = np.asarray(y)
    curves_arr = np.asarray(curves)
    groups_arr = np.asarray(groups)
    probabilities, covering, cells = [], 0, []
    for name, table in sorted(tables.get("groups", {}).items()):
        sel = np.flatnonzero(groups_arr == name)
        if len(sel) == 0 or not (y[sel] == 1).any():
            continue
        odds_test = float((y[sel] == 0).sum() / (y[sel] == 1).sum())
        bins = _cell_of(table, raw[sel])
        for k in range(len(table["low"])):
            in_cell = sel[bins == k]
            label_of = dict(zip(curves_arr[in_cell].tolist(), y[in_cell].tolist(), strict=True))
            n_test, k_test = len(label_of), int(sum(label_of.values()))
            if n_test < min_curves:
                continue
            n_cal, k_cal = int(table["n"][k]), int(table["kilonovae"][k])
            pmf = _predictive(k_cal, n_cal, float(table["odds"]), odds_test, n_test)
            mid = np.cumsum(pmf) - 0.5 * pmf
            inside = (mid >= tail) & (mid <= 1.0 - tail)
            probabilities.append(float(pmf[inside].sum()))
            covered = bool(inside[k_test])
            covering += covered
            cells.append(
                {
                    "group": name,
                    "bin": k,
                    "interval": [round(float(table["low"][k]), 4), round(float(table["high"][k]), 4)],
                    "held_out": [n_test, k_test],
                    "held_out_fraction": round(float(_to_prior(k_test / n_test, odds_test)), 4),
                    "calibration": [n_cal, k_cal],
                    "pit": round(float(mid[k_test]), 4),
                    "covering": covered,
                }
            )
    dist = _poisson_binomial(probabilities)
    below, above = float(dist[: covering + 1].sum()), float(dist[covering:].sum())
    p_value = min(1.0, 2.0 * min(below, above))
    return {
        "level": level,
        "cells": len(cells),
        "covering": covering,
        "expected": round(float(np.sum(probabilities)), 2),
        "p_value": round(p_value, 4),
        "significance": significance,
        "passes": bool(p_value >= significance) and len(cells) > 0,
        "per_cell": cells,
    }
