"""The false-alarm figure of a SNEWS coincidence, as the SNEWS 2.0 coincidence server computes it.

``snews-cs`` 3.0.1 (``cs_stats.cache_false_alarm_rate``) takes every detector to imitate a supernova once a
week, counts the combinations of ``r`` coincident detectors among the ``n`` detectors that sent heartbeats,
and reports the inverse of the combined imitation frequency, per year:

.. math::

    R = (C(n, r) + 1) \\prod_i F_i \\, \\delta t^{r - 1}, \\qquad
    \\mathrm{false\\_alarm\\_prob} = \\frac{1}{R / \\mathrm{year}}

(with ``C(n, r) = 0`` when fewer than ``r`` detectors are online). ``snews-cs`` labels the figure
"False Alarm Prob"; it is the mean time, in years, between such chance coincidences. Here each detector may
have its own imitation frequency ``F_i`` (default one per week, which gives ``snews-cs``'s figure), and
``δt`` is the configured coincidence window (``snews-cs`` hard-codes 10 s).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

__all__ = ["SECONDS_PER_YEAR", "SECONDS_PER_WEEK", "n_choose_r", "false_alarm_figure"]

SECONDS_PER_YEAR = 31_556_926  # as snews-cs
SECONDS_PER_WEEK = 604_800


def n_choose_r(n: int, r: int) -> int:
    """Combinations of ``r`` among ``n``; 0 when ``n < r`` (as ``snews-cs``, whose heartbeat cache may be empty).

    Examples
    --------
    >>> n_choose_r(8, 2), n_choose_r(1, 2)
    (28, 0)
    """
    if r < 0 or n - r < 0:
        return 0
    return math.comb(n, r)


def false_alarm_figure(
    detectors: Sequence[str],
    online_detectors: int,
    window_s: float = 10.0,
    rates_per_s: Mapping[str, float] | None = None,
    default_rate_per_s: float = 1 / SECONDS_PER_WEEK,
) -> float:
    """The ``snews-cs`` false-alarm figure of a coincidence of ``detectors`` (years between chance coincidences).

    Parameters
    ----------
    detectors : sequence of str
        The coincident detectors (``r = len(detectors)``).
    online_detectors : int
        Detectors that sent a heartbeat recently (``n``).
    window_s : float
        The coincidence window.
    rates_per_s : mapping, optional
        Each detector's imitation frequency (per second); missing ones take ``default_rate_per_s``.

    Examples
    --------
    >>> round(false_alarm_figure(["A", "B"], online_detectors=8) / 1e16, 4)
    3.9803
    """
    r = len(detectors)
    rates = rates_per_s or {}
    product = 1.0
    for name in detectors:
        product *= float(rates.get(name, default_rate_per_s))
    combined = (n_choose_r(online_detectors, r) + 1) * product * float(window_s) ** (r - 1)
    if combined <= 0:
        return math.inf
    return SECONDS_PER_YEAR / combined
