"""Light-curve features of the kilonova classifier: one function shared by training and inference.

A light curve is a sequence of :class:`Observation` (magnitudes, any order, any band a kilonova follow-up
uses). :func:`photometric_band` maps each point to one of the canonical bands ``u g r i z y J H K`` and
to AB magnitudes: survey spellings (``ztfg``, ``lsstr``, ``ps1::g``, ``sdssi``, ``DECam-z``, HST
``F814W``...) are mapped to the nearest canonical band, and Vega magnitudes (Johnson-Cousins U B V R I and
2MASS J H Ks by default, or any point whose ``system`` says ``Vega``) are converted to AB with the offsets
of :data:`VEGA_TO_AB` (Blanton & Roweis 2007, AJ 133, 734, table 1; UKIRT Y from Hewett et al. 2006).
A point in a band the classifier cannot place (unfiltered, Swift UV, mid-infrared...) is not used, and
:func:`unused_bands` says which: it is reported, never dropped silently.

No feature depends on the apparent brightness itself (distance is unknown without a GW event, and the
synthetic magnitude distribution would teach the model survey selection rather than physics): the
features are fading rates, colours (as a spectral slope, in magnitudes per decade of wavelength, so that
any pair of bands gives the same quantity) and their change, amplitudes, time scales, what the upper
limits anywhere in the light curve imply, and, with a :class:`GWContext`, the time since the merger and
the absolute magnitude implied by the event's distance.

Missing features (a band never seen, a rate that needs two points, no GW context) are ``nan``; the model
(histogram gradient boosting) handles ``nan`` natively.

The features are computed for many light curves at once (:func:`extract_features_many`: numpy over the
concatenated points of a batch, in :mod:`~tom_mma_broker.classifier.kernels`); :func:`extract_features` is a
batch of one, so every feature has one definition, whether a light curve is scored alone or with others.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from . import kernels
from .bands import BAND_WAVELENGTH_AA, BANDS, VEGA_TO_AB, canonical_band, photometric_band

__all__ = [
    "BANDS",
    "BAND_WAVELENGTH_AA",
    "FEATURE_NAMES",
    "GW_FEATURE_NAMES",
    "VEGA_TO_AB",
    "FeatureBatch",
    "GWContext",
    "Observation",
    "canonical_band",
    "detections",
    "extract_features",
    "extract_features_many",
    "photometric_band",
    "unused_bands",
]


@dataclass(frozen=True)
class Observation:
    """One photometric point of a light curve.

    Parameters
    ----------
    mjd
        Time (Modified Julian Date).
    band
        Filter name as the survey writes it, e.g. ``"g"``, ``"ztfr"``, ``"ps1::i"``, ``"Ks"``, ``"F814W"``
        (see :func:`photometric_band`).
    magnitude
        Magnitude; for an upper limit, the limiting magnitude.
    magnitude_error
        One-sigma error, if known.
    upper_limit
        True for a non-detection (``magnitude`` is then the limit).
    system
        ``"AB"`` or ``"Vega"``; ``None``: the band's usual system (Vega for Johnson-Cousins U B V R I and
        2MASS J H Ks, AB for everything else).
    """

    mjd: float
    band: str
    magnitude: float
    magnitude_error: float | None = None
    upper_limit: bool = False
    system: str | None = None


@dataclass(frozen=True)
class GWContext:
    """What the gravitational-wave event says about a candidate.

    Parameters
    ----------
    merger_mjd
        Time of the merger (MJD).
    distance_mpc
        The luminosity distance at the candidate's position (the sky map's conditional distance, or the
        event's mean distance), if known.
    credible_level
        The smallest credible level of the sky map whose region contains the candidate (0-1), if known.
    """

    merger_mjd: float
    distance_mpc: float | None = None
    credible_level: float | None = None


def _placed(obs: Observation) -> tuple[str, float] | None:
    try:
        return photometric_band(obs.band, obs.system)
    except ValueError:
        return None


def unused_bands(observations: Sequence[Observation]) -> list[str]:
    """The band names (with their system where unknown) of the points the classifier cannot use.

    Examples
    --------
    >>> unused_bands([Observation(1.0, "g", 20.0), Observation(1.0, "UVW1", 19.0), Observation(2, "w", 20)])
    ['UVW1', 'w']
    """
    return sorted({str(obs.band) for obs in observations if _placed(obs) is None})


# The band groups of the per-group fading rates.
_GROUPS = {"blue": ("u", "g"), "red": ("r", "i"), "far_red": ("z", "y"), "nir": ("J", "H", "K")}
_LOG_WAVELENGTH = {band: math.log10(wl) for band, wl in BAND_WAVELENGTH_AA.items()}

GW_FEATURE_NAMES: tuple[str, ...] = (
    "days_since_merger_first",
    "days_since_merger_last",
    "abs_mag_peak",
    "abs_mag_last",
    "credible_level",
)
"""The features that need a :class:`GWContext` (``nan`` without it)."""

FEATURE_NAMES: tuple[str, ...] = (
    "n_detections",
    "n_bands",
    "span_days",
    "median_mag_err",
    "slope_all",
    "slope_all_err",
    "slope_recent",
    *(f"slope_{group}" for group in kernels.GROUPS),
    "fade_from_peak",
    "rise_to_peak",
    "days_since_peak",
    "duration_half_peak",
    "sed_slope_first",
    "sed_slope_last",
    "sed_slope_rate",
    "nir_minus_optical",
    "reddest_wavelength",
    "predet_gap_days",
    "predet_depth",
    "predet_rise_rate",
    "postdet_fade_rate",
    "n_limits_after_first",
    *GW_FEATURE_NAMES,
)
"""Names of the features, in the order the model sees them."""


def detections(observations: Sequence[Observation]) -> list[Observation]:
    """The detections (not upper limits) in a band the classifier uses.

    Examples
    --------
    >>> detections([Observation(1.0, "g", 20.0), Observation(2.0, "g", 21.0, upper_limit=True),
    ...             Observation(2.0, "UVM2", 19.0)])
    [Observation(mjd=1.0, band='g', magnitude=20.0, magnitude_error=None, upper_limit=False, system=None)]
    """
    return [
        obs
        for obs in observations
        if not obs.upper_limit
        and _placed(obs) is not None
        and math.isfinite(float(obs.magnitude))
        and math.isfinite(float(obs.mjd))
    ]


_COLUMNS = {name: k for k, name in enumerate(FEATURE_NAMES)}
_column = _COLUMNS.__getitem__


_NAN = math.nan


@dataclass(frozen=True)
class FeatureBatch:
    """The features of a batch of light curves, with what the classifier reports beside them.

    Parameters
    ----------
    matrix
        One row per light curve, one column per name of :data:`FEATURE_NAMES` (``nan`` where undefined).
    bands
        Per light curve, the canonical bands of its detections, blue to red.
    unused_bands
        Per light curve, :func:`unused_bands`.
    """

    matrix: np.ndarray
    bands: list[list[str]]
    unused_bands: list[list[str]]

    def row(self, index: int) -> dict[str, float]:
        """The features of one light curve as a dict (``math.nan`` where undefined, as before batching)."""
        values = self.matrix[index].tolist()
        return {name: (_NAN if v != v else v) for name, v in zip(FEATURE_NAMES, values, strict=True)}


def _points(curves: Sequence[tuple[Sequence[Observation], GWContext | None]]):
    """The placed points with finite time and magnitude of every light curve, as sorted arrays.

    Also the unused bands of each light curve. The observations' fields are read in one pass each and every
    distinct band name is placed once; the rest is numpy.
    """
    lengths = [len(observations) for observations, _ in curves]
    points = list(itertools.chain.from_iterable(observations for observations, _ in curves))
    names = [obs.band for obs in points]
    keys = list(zip(names, [obs.system for obs in points], strict=True))
    distinct = {key: k for k, key in enumerate(dict.fromkeys(keys))}
    band_of, offset_of = np.full(len(distinct), -1, dtype=np.intp), np.zeros(len(distinct))
    for key, k in distinct.items():
        try:
            placed = photometric_band(*key)
        except ValueError:
            placed = None
        if placed is not None:
            band_of[k], offset_of[k] = BANDS.index(placed[0]), placed[1]
    code = np.array([distinct[key] for key in keys], dtype=np.intp)
    c = np.repeat(np.arange(len(curves), dtype=np.intp), lengths)
    b, offset = band_of[code], offset_of[code]
    unused: list[set[str]] = [set() for _ in curves]
    for k in np.flatnonzero(b < 0).tolist():
        unused[c[k]].add(str(names[k]))
    t = np.array([obs.mjd for obs in points], dtype=float)
    m = np.array([obs.magnitude for obs in points], dtype=float)
    e = np.array([obs.magnitude_error for obs in points], dtype=float)  # None: nan
    u = np.array([bool(obs.upper_limit) for obs in points], dtype=bool)
    keep = (b >= 0) & np.isfinite(t) & np.isfinite(m)
    e = np.where(np.isfinite(e) & (e > 0), e, kernels.DEFAULT_ERROR)
    m = m + offset
    c, t, m, e, b, u = (a[keep] for a in (c, t, m, e, b, u))
    order = np.lexsort((u, b, t, c))  # stable: equal points keep their order
    return tuple(a[order] for a in (c, t, m, e, b, u)), [sorted(bad) for bad in unused]


def extract_features_many(curves: Sequence[tuple[Sequence[Observation], GWContext | None]]) -> FeatureBatch:
    """Compute the classifier's features of several light curves at once (what training and inference use).

    Parameters
    ----------
    curves
        ``(observations, context)`` per light curve, as for :func:`extract_features`.

    Returns
    -------
    FeatureBatch
        The feature matrix (a row per light curve, the columns of :data:`FEATURE_NAMES`), the bands of the
        detections and the unused bands. A light curve's row does not depend on the others in the batch.

    Examples
    --------
    >>> lc = [Observation(60000.0 + d, "r", 19.0 + 0.5 * d, 0.05) for d in range(4)]
    >>> batch = extract_features_many([(lc, None), (lc[:1], None), ([], None)])
    >>> batch.matrix.shape == (3, len(FEATURE_NAMES)), batch.matrix[:, 0].tolist(), batch.bands
    (True, [4.0, 1.0, 0.0], [['r'], ['r'], []])
    """
    n = len(curves)
    out = np.full((n, len(FEATURE_NAMES)), np.nan)
    (c, t, m, e, b, u), unused = _points(curves)
    det = ~u
    dc, dt, dm, de, db = c[det], t[det], m[det], e[det], b[det]
    n_det = np.bincount(dc, minlength=n)
    out[:, _column("n_detections")] = n_det
    counts = np.bincount(dc * kernels.N_BANDS + db, minlength=n * kernels.N_BANDS).reshape(n, kernels.N_BANDS)
    bands = [[band for band, seen in zip(BANDS, row, strict=True) if seen] for row in (counts > 0).tolist()]
    has = np.flatnonzero(n_det > 0)
    if len(has) == 0:
        return FeatureBatch(out, bands, unused)
    starts, ends = kernels.group_firsts(dc), kernels.group_lasts(dc)
    t_first, t_last = np.full(n, np.nan), np.full(n, np.nan)
    t_first[has], t_last[has] = dt[starts], dt[ends]
    w = kernels.weights(de)
    out[has, _column("n_bands")] = (counts[has] > 0).sum(axis=1)
    out[:, _column("span_days")] = t_last - t_first
    # the median error: the middle one, or the mean of the middle two, of each light curve's sorted errors
    sorted_e = de[np.lexsort((de, dc))]
    half = n_det[has] // 2
    upper_mid = sorted_e[starts + half]
    lower_mid = sorted_e[starts + np.maximum(half - 1, 0)]
    out[has, _column("median_mag_err")] = np.where(n_det[has] % 2 == 1, upper_mid, (lower_mid + upper_mid) / 2)

    # the fading rates: all detections, the recent ones, each band group; one call over the subsets stacked
    subsets = [np.ones(len(dc), dtype=bool), dt >= t_last[dc] - kernels.RECENT_DAYS]
    subsets += [kernels.GROUP_MEMBERS[group][db] for group in kernels.GROUPS]
    stacked = np.concatenate([np.flatnonzero(s) for s in subsets])
    which = np.repeat(np.arange(len(subsets)), [int(s.sum()) for s in subsets])
    slopes, slope_errs = kernels.common_slopes(
        which * n + dc[stacked], dt[stacked], dm[stacked], db[stacked], w[stacked], n * len(subsets)
    )
    slopes, slope_errs = slopes.reshape(len(subsets), n), slope_errs.reshape(len(subsets), n)
    slope_all = slopes[0]
    out[:, _column("slope_all")], out[:, _column("slope_all_err")] = slope_all, slope_errs[0]
    out[:, _column("slope_recent")] = slopes[1]
    for k, group in enumerate(kernels.GROUPS, start=2):
        out[:, _column(f"slope_{group}")] = slopes[k]

    peak = kernels.main_band_peak(dc, dt, dm, db, counts)
    peak_names = ("fade_from_peak", "rise_to_peak", "days_since_peak", "duration_half_peak")
    for name, values in zip(peak_names, peak, strict=True):
        out[:, _column(name)] = values

    sed_first, sed_last, sed_t0, sed_t1 = kernels.sed_slopes(dc, dt, dm, db, slope_all)
    out[:, _column("sed_slope_first")], out[:, _column("sed_slope_last")] = sed_first, sed_last
    with np.errstate(invalid="ignore"):
        changed = sed_t1 - sed_t0 >= kernels.COLOUR_PAIR_MAX_DT
        out[:, _column("sed_slope_rate")] = np.where(changed, (sed_last - sed_first) / (sed_t1 - sed_t0), np.nan)
    out[:, _column("nir_minus_optical")] = kernels.nearest_optical_colour(dc, dt, dm, db, slope_all)
    reddest = kernels.N_BANDS - 1 - np.argmax(counts[has][:, ::-1] > 0, axis=1)
    out[has, _column("reddest_wavelength")] = kernels.WAVELENGTH_AA[reddest] / 1e4

    # upper limits: the last one before the first detection, and every one after the first detection
    m_first = np.full(n, np.nan)
    m_first[has] = dm[starts]
    lc, lt, lm, lb = c[u], t[u], m[u], b[u]
    with np.errstate(invalid="ignore"):
        before = np.flatnonzero(lt < t_first[lc])
    if len(before):
        last = before[kernels.group_lasts(lc[before])]
        owner = lc[last]
        gap = t_first[owner] - lt[last]
        out[owner, _column("predet_gap_days")] = gap
        # positive: the first detection is brighter than an earlier limit, so the source is new or rising
        depth = lm[last] - m_first[owner]
        out[owner, _column("predet_depth")] = depth
        rising = (gap > 0) & (lm[last] > m_first[owner])
        out[owner[rising], _column("predet_rise_rate")] = depth[rising] / np.maximum(gap[rising], 0.01)
    with np.errstate(invalid="ignore"):
        after = np.flatnonzero(lt > t_first[lc])
    out[has, _column("n_limits_after_first")] = np.bincount(lc[after], minlength=n)[has]
    out[:, _column("postdet_fade_rate")] = kernels.postdet_fade_rates(
        dc, dt, dm, db, lc[after], lt[after], lm[after], lb[after], n
    )

    _gw_features(out, curves, has, t_first, t_last, dm, dc, starts, ends)
    return FeatureBatch(out, bands, unused)


def _gw_features(out, curves, has, t_first, t_last, dm, dc, starts, ends) -> None:
    """The features of the GW context (merger time, distance, credible level) of the light curves with one."""
    rows = [k for k in has.tolist() if curves[k][1] is not None]
    if not rows:
        return
    position = np.searchsorted(dc[starts], rows)
    m_peak = np.minimum.reduceat(dm, starts)[position].tolist()
    m_last = dm[ends][position].tolist()
    for k, peak, last in zip(rows, m_peak, m_last, strict=True):
        context = curves[k][1]
        out[k, _column("days_since_merger_first")] = t_first[k] - float(context.merger_mjd)
        out[k, _column("days_since_merger_last")] = t_last[k] - float(context.merger_mjd)
        if context.distance_mpc is not None and context.distance_mpc > 0:
            modulus = 5.0 * math.log10(float(context.distance_mpc) * 1e5)
            out[k, _column("abs_mag_peak")] = peak - modulus
            out[k, _column("abs_mag_last")] = last - modulus
        if context.credible_level is not None:
            out[k, _column("credible_level")] = float(context.credible_level)


def extract_features(observations: Sequence[Observation], context: GWContext | None = None) -> dict[str, float]:
    """Compute the classifier's features of a (partial) light curve.

    A batch of one for :func:`extract_features_many`: one definition of the features, whether a light curve
    is scored alone or with others.

    Parameters
    ----------
    observations
        The points seen so far, detections and upper limits, in any order and any bands. Points in bands
        the classifier cannot place (see :func:`photometric_band`) are ignored (:func:`unused_bands`).
    context
        The GW event the candidate may belong to; without it, the GW features are ``nan``.

    Returns
    -------
    dict
        One float per name of :data:`FEATURE_NAMES`, in that order; ``nan`` when a feature cannot be
        computed from the points given. Magnitude rates are in mag/day, positive when fading; spectral
        slopes in mag per decade of wavelength, positive when red; times in days.

    Examples
    --------
    A source fading by 0.5 mag/day in r:

    >>> lc = [Observation(60000.0 + d, "r", 19.0 + 0.5 * d, 0.05) for d in range(4)]
    >>> f = extract_features(lc)
    >>> f["n_detections"], round(f["slope_red"], 6), f["fade_from_peak"], f["days_since_peak"]
    (4.0, 0.5, 1.5, 3.0)
    >>> import math; math.isnan(f["sed_slope_last"]), math.isnan(f["days_since_merger_first"])
    (True, True)
    >>> g = extract_features(lc, GWContext(merger_mjd=59999.5, distance_mpc=40.0))
    >>> g["days_since_merger_first"], round(g["abs_mag_peak"], 2)
    (0.5, -14.01)
    """
    return extract_features_many([(observations, context)]).row(0)
