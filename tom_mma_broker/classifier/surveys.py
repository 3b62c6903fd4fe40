"""How a survey observes a synthetic light curve: cadences, bands, depths, noise and upper limits.

:func:`observe` turns a magnitude model of :mod:`~tom_mma_broker.classifier.synthetic` into the points a
ZTF-like, a Rubin-like or a heterogeneous multi-telescope follow-up would have taken (:data:`SURVEYS`), the
same for every class so that the cadence teaches the classifier nothing. Deterministic given the
:class:`numpy.random.Generator`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .features import BANDS, Observation

__all__ = ["SURVEYS", "MagModel", "observe"]

SURVEYS = ("ZTF", "Rubin", "follow-up")
"""The observing set-ups of :func:`observe`."""

# a model: (times in days since explosion / merger, band) -> AB magnitude (inf where no flux)
MagModel = Callable[[np.ndarray, str], np.ndarray]

# Galactic extinction A_band / E(B-V) (Schlafly & Finkbeiner 2011, R_V = 3.1: SDSS ugriz, PS1 y, 2MASS JHKs)
_EXTINCTION_COEFF = {
    "u": 4.24,
    "g": 3.30,
    "r": 2.29,
    "i": 1.70,
    "z": 1.26,
    "y": 1.08,
    "J": 0.71,
    "H": 0.45,
    "K": 0.30,
}

_RUBIN_DEPTH = {"u": 23.7, "g": 24.6, "r": 24.2, "i": 23.7, "z": 23.1, "y": 22.2}


def _visits(survey: str, rng: np.random.Generator, t_first: float, duration: float) -> list[tuple[float, str, float]]:
    """(time, band, 5-sigma depth) of the visits of a survey from ``t_first`` for ``duration`` days."""
    visits: list[tuple[float, str, float]] = []
    if survey == "ZTF":
        bands = ("g", "r", "i") if rng.random() < 0.25 else ("g", "r")
        depth = rng.uniform(19.8, 21.0)
        cadence = rng.uniform(0.8, 3.0)
        t = t_first
        while t <= t_first + duration:
            for band in bands:
                if rng.random() < (0.85 if band != "i" else 0.4):
                    for k in range(1 + int(rng.random() < 0.3)):  # sometimes two visits a night
                        visits.append((t + rng.uniform(0.0, 0.15) + 0.05 * k, band, depth + rng.normal(0.0, 0.3)))
            t += cadence * rng.uniform(0.6, 1.4)
        return visits
    if survey == "Rubin":
        # wide-fast-deep-like: a night every 2-5 days with visits in two bands ~30 minutes apart
        t = t_first
        while t <= t_first + duration:
            pair = rng.choice(6, size=2, replace=False)
            for k, index in enumerate(sorted(pair)):
                band = "ugrizy"[index]
                visits.append((t + 0.02 * k, band, _RUBIN_DEPTH[band] + rng.normal(-0.2, 0.3)))
            t += rng.uniform(1.5, 5.0)
        return visits
    # follow-up: a ZTF-like discovery, then 1-3 telescopes a night in several bands, optical and NIR
    discovery_depth = rng.uniform(19.8, 21.5)
    visits.append((t_first, str(rng.choice(["g", "r"])), discovery_depth))
    sets = (("g", "r", "i"), ("g", "r", "i", "z"), ("r", "i", "z", "y"), ("J", "H", "K"), ("u", "g", "r"), ("i", "z"))
    t = t_first + rng.uniform(0.1, 1.0)
    while t <= t_first + duration:
        for _ in range(1 + int(rng.integers(0, 3))):
            chosen = sets[int(rng.integers(0, len(sets)))]
            depth = rng.uniform(20.5, 23.0) if chosen[0] != "J" else rng.uniform(19.5, 22.0)
            start = t + rng.uniform(0.0, 0.3)
            for k, band in enumerate(chosen):
                if rng.random() < 0.8:
                    visits.append((start + 0.01 * k, band, depth + rng.normal(0.0, 0.3)))
        t += rng.uniform(0.7, 1.3) * (1.0 if rng.random() < 0.7 else 2.0)
    return visits


def observe(
    model: MagModel,
    rng: np.random.Generator,
    *,
    t_first: float,
    duration: float,
    offset_mag: float = 0.0,
    mjd0: float | None = None,
    survey: str | None = None,
    host_ebv_scale: float = 0.0,
) -> tuple[list[Observation], str]:
    """Observe a model with a survey, from ``t_first`` (days since explosion or merger) for ``duration`` days.

    Parameters
    ----------
    survey
        One of :data:`SURVEYS`; None draws one (ZTF-like 40 %, Rubin-like 30 %, follow-up 30 %).
    host_ebv_scale
        Host-galaxy reddening E(B-V), exponentially distributed with this mean (0: none), with the same
        extinction law as the Galactic one (no redshift).

    Returns
    -------
    observations, survey
        Points fainter than the visit's depth (or below SNR 5) become upper limits at the depth; noise has
        SNR 5 at the depth and a 0.01 mag floor; Galactic E(B-V) 0-0.15; with probability 0.6 there are 1-5
        survey non-detections 1-15 days before the first visit.
    """
    if survey is None:
        survey = SURVEYS[int(rng.choice(3, p=[0.4, 0.3, 0.3]))]
    ebv = rng.uniform(0.0, 0.15) + (rng.exponential(host_ebv_scale) if host_ebv_scale > 0 else 0.0)
    mjd0 = rng.uniform(58000.0, 61000.0) if mjd0 is None else mjd0
    visits = _visits(survey, rng, t_first, duration)
    if rng.random() < 0.6:
        history_band = "r" if survey != "Rubin" else "i"
        depth = visits[0][2]
        for _ in range(int(rng.integers(1, 6))):
            visits.append((t_first - rng.uniform(1.0, 15.0), history_band, depth + rng.normal(0.0, 0.3)))
    visits.sort()
    t = np.array([v[0] for v in visits])
    names = [v[1] for v in visits]
    depths = np.array([v[2] for v in visits])
    observations = []
    for band in sorted(set(names), key=BANDS.index):
        sel = np.array([name == band for name in names])
        true_mag = model(t[sel], band) + offset_mag + _EXTINCTION_COEFF[band] * ebv
        limit = depths[sel]
        with np.errstate(over="ignore"):
            snr = 5.0 * 10 ** (-0.4 * (true_mag - limit))
        sigma = np.hypot(0.01, 1.0857 / np.maximum(snr, 1e-6))
        measured = true_mag + rng.normal(0.0, 1.0, sel.sum()) * np.where(np.isfinite(sigma), sigma, 0.0)
        for ti, m, s, lim, sn in zip(t[sel], measured, sigma, limit, snr, strict=True):
            if sn >= 5.0 and np.isfinite(m) and m < lim:
                observations.append(Observation(float(mjd0 + ti), band, float(m), float(s), False))
            else:
                observations.append(Observation(float(mjd0 + ti), band, float(lim), None, True))
    observations.sort(key=lambda o: (o.mjd, BANDS.index(o.band)))
    return observations, survey
