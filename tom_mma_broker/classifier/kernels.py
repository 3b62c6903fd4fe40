"""The array computations behind the classifier's features, over many light curves at once.

The points of a batch of light curves are concatenated, sorted by light curve, then time, band and kind (the
order :func:`~tom_mma_broker.classifier.features.extract_features` has always used), and each quantity is
computed per segment (a light curve, one band of it, one epoch of it) with :func:`numpy.bincount` sums and
``reduceat`` extremes instead of a Python loop per light curve. A batch of one light curve is the one-by-one
case: there is only this code path, shared by training and inference.

Conventions: ``c`` is the light curve of each point (non-decreasing), ``t`` its time (non-decreasing within a
light curve), ``b`` its band as an index into :data:`~tom_mma_broker.classifier.bands.BANDS`, ``m`` its AB
magnitude, ``w`` its weight; ``n`` is the number of light curves. Every function returns one value per light
curve, ``nan`` where the quantity is undefined.
"""

from __future__ import annotations

import math

import numpy as np

from .bands import BAND_WAVELENGTH_AA, BANDS

__all__ = [
    "COLOUR_PAIR_MAX_DT",
    "DEFAULT_ERROR",
    "ERROR_FLOOR",
    "GROUPS",
    "MIN_SLOPE_SPAN",
    "RECENT_DAYS",
    "common_slopes",
    "first_min",
    "group_firsts",
    "group_lasts",
    "main_band_peak",
    "nearest_optical_colour",
    "postdet_fade_rates",
    "sed_slopes",
    "weights",
]

N_BANDS = len(BANDS)
# Two points in different bands closer than this in time (days) make a colour.
COLOUR_PAIR_MAX_DT = 0.5
# A slope needs points spread over at least this time (days).
MIN_SLOPE_SPAN = 0.1
# "Recent" fading: detections within this many days of the latest one.
RECENT_DAYS = 3.0
# Added in quadrature to every magnitude error (calibration across telescopes), and the error assumed
# where none is given.
ERROR_FLOOR = 0.03
DEFAULT_ERROR = 0.1
# The band groups of the per-group fading rates.
GROUPS = {"blue": ("u", "g"), "red": ("r", "i"), "far_red": ("z", "y"), "nir": ("J", "H", "K")}
LOG_WAVELENGTH = np.array([math.log10(BAND_WAVELENGTH_AA[band]) for band in BANDS])
WAVELENGTH_AA = np.array([BAND_WAVELENGTH_AA[band] for band in BANDS])
# per group, whether each band (by index) is a member
GROUP_MEMBERS = {group: np.isin(np.array(BANDS), members) for group, members in GROUPS.items()}


def weights(err: np.ndarray) -> np.ndarray:
    """Weights of magnitudes of errors ``err``: ``1 / (err**2 + ERROR_FLOOR**2)``."""
    return 1.0 / (err**2 + ERROR_FLOOR**2)


def group_firsts(groups: np.ndarray) -> np.ndarray:
    """Index of the first element of each run of equal values in ``groups`` (sorted).

    Examples
    --------
    >>> group_firsts(np.array([0, 0, 2, 2, 2, 5])).tolist()
    [0, 2, 5]
    """
    return _run_edges(groups, last=False)


def group_lasts(groups: np.ndarray) -> np.ndarray:
    """Index of the last element of each run of equal values in ``groups`` (sorted).

    Examples
    --------
    >>> group_lasts(np.array([0, 0, 2, 2, 2, 5])).tolist()
    [1, 4, 5]
    """
    return _run_edges(groups, last=True)


def _run_edges(groups: np.ndarray, last: bool) -> np.ndarray:
    if len(groups) == 0:
        return np.zeros(0, dtype=np.intp)
    change = groups[1:] != groups[:-1]
    return np.flatnonzero(np.concatenate((change, [True]) if last else ([True], change)))


def first_min(values: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per run of ``groups`` (sorted): the group and the index of the first element with the smallest value.

    Examples
    --------
    >>> g, i = first_min(np.array([3.0, 1.0, 1.0, 2.0, 2.0]), np.array([0, 0, 0, 4, 4]))
    >>> g.tolist(), i.tolist()
    ([0, 4], [1, 3])
    """
    starts = group_firsts(groups)
    if len(starts) == 0:
        return groups[:0], starts
    lowest = np.minimum.reduceat(values, starts)
    lengths = np.diff(np.append(starts, len(values)))
    hits = np.flatnonzero(values == np.repeat(lowest, lengths))
    first = hits[group_firsts(groups[hits])]
    return groups[first], first


def common_slopes(
    c: np.ndarray, t: np.ndarray, m: np.ndarray, b: np.ndarray, w: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Error-weighted slope of all bands with one intercept per band (colours held constant), and its error.

    Bands with fewer than two points do not count; the slope is undefined (``nan``) when the counted bands'
    time spans add up to less than :data:`MIN_SLOPE_SPAN`. The formal error is inflated by the scatter about
    the fit when it is larger than the errors say.
    """
    slope, err = np.full(n, np.nan), np.full(n, np.nan)
    if len(c) == 0:
        return slope, err
    size = n * N_BANDS
    seg = c * N_BANDS + b
    count = np.bincount(seg, minlength=size)
    total_w = np.bincount(seg, w, size)
    with np.errstate(invalid="ignore", divide="ignore"):
        t_mean = np.bincount(seg, w * t, size) / total_w
        m_mean = np.bincount(seg, w * m, size) / total_w
    dt = t - t_mean[seg]
    num_seg = np.bincount(seg, w * dt * (m - m_mean[seg]), size)
    den_seg = np.bincount(seg, w * dt * dt, size)
    # each band's time span: its first and last points (times are sorted within a light curve)
    order = np.argsort(seg, kind="stable")
    starts, ends = group_firsts(seg[order]), group_lasts(seg[order])
    present = seg[order][starts]
    span = np.zeros(size)
    span[present] = t[order][ends] - t[order][starts]
    used = count >= 2
    curve = np.arange(size) // N_BANDS  # ascending segment ids: the bands of a light curve summed blue to red
    num = np.bincount(curve, np.where(used, num_seg, 0.0), n)
    den = np.bincount(curve, np.where(used, den_seg, 0.0), n)
    spread = np.bincount(curve, np.where(used, span, 0.0), n)
    n_used = np.bincount(curve, used, n)
    n_points = np.bincount(curve, np.where(used, count, 0), n)
    ok = (n_used > 0) & (den > 0) & (spread >= MIN_SLOPE_SPAN)
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = np.where(ok, num / den, np.nan)
        resid = m - (m_mean[seg] + slope[c] * (t - t_mean[seg]))
        chi2 = np.bincount(c, np.where(used[seg], w * resid * resid, 0.0), n)
        dof = n_points - n_used - 1
        scale = np.where(dof > 0, np.maximum(1.0, chi2 / np.where(dof > 0, dof, 1)), 1.0)
        err = np.where(ok, np.sqrt(scale / den), np.nan)
    return slope, err


def main_band_peak(
    c: np.ndarray, t: np.ndarray, m: np.ndarray, b: np.ndarray, counts: np.ndarray
) -> tuple[np.ndarray, ...]:
    """Peak and fade in the band with most detections of each light curve (ties: the one nearest r).

    Returns ``fade_from_peak``, ``rise_to_peak``, ``days_since_peak`` and ``duration_half_peak`` (the time
    between the first and the last point within 0.75 mag, a factor 2 in flux, of the peak).
    """
    n = len(counts)
    out = tuple(np.full(n, np.nan) for _ in range(4))
    rank = np.where(counts > 0, counts * 16 - np.abs(np.arange(N_BANDS) - 2), -1)  # 16 > any band distance
    main = np.argmax(rank, axis=1)
    sel = np.flatnonzero(b == main[c])
    if len(sel) == 0:
        return out
    cm, tm, mm = c[sel], t[sel], m[sel]
    curves, peak = first_min(mm, cm)
    starts, last = group_firsts(cm), group_lasts(cm)
    fade, rise, since, duration = out
    fade[curves] = mm[last] - mm[peak]
    rise[curves] = mm[starts] - mm[peak]
    since[curves] = tm[last] - tm[peak]
    bright = np.flatnonzero(mm <= np.repeat(mm[peak] + 0.75, last - starts + 1))
    b_starts, b_last = group_firsts(cm[bright]), group_lasts(cm[bright])
    duration[cm[bright][b_starts]] = tm[bright][b_last] - tm[bright][b_starts]
    return out


def sed_slopes(
    c: np.ndarray, t: np.ndarray, m: np.ndarray, b: np.ndarray, slope: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Spectral slopes of the first and the last epoch with two bands, and those epochs' times.

    An epoch starts at a point and holds the points within :data:`COLOUR_PAIR_MAX_DT` days after it; the next
    epoch starts at the first point after that. An epoch's slope is ``(m_blue - m_red) /
    log10(lambda_red / lambda_blue)`` fitted over its bands' mean magnitudes: magnitudes per decade of
    wavelength, positive for a source redder than flat in f_nu; points are moved to the epoch's start with
    the light curve's fading rate ``slope`` (none where it is ``nan``).

    Returns
    -------
    tuple of arrays
        ``(first slope, last slope, first time, last time)`` per light curve.
    """
    n = len(slope)
    first_s, last_s, first_t, last_t = (np.full(n, np.nan) for _ in range(4))
    if len(c) == 0:
        return first_s, last_s, first_t, last_t
    # the epochs: greedy from each epoch's first point, so a loop over the points (plain floats, one pass)
    epoch = np.empty(len(c), dtype=np.intp)
    times, curves = t.tolist(), c.tolist()
    k, current, start = -1, -1, 0.0
    for i, (ti, ci) in enumerate(zip(times, curves, strict=True)):
        if ci != current or ti - start > COLOUR_PAIR_MAX_DT:
            k, current, start = k + 1, ci, ti
        epoch[i] = k
    n_epochs = k + 1
    starts = group_firsts(epoch)
    t_ref = t[starts]
    epoch_curve = c[starts]
    shift = np.where(np.isnan(slope), 0.0, slope)
    size = n_epochs * N_BANDS
    seg = epoch * N_BANDS + b
    count = np.bincount(seg, minlength=size)
    moved = m - shift[c] * (t - t_ref[epoch])
    with np.errstate(invalid="ignore", divide="ignore"):
        y = np.bincount(seg, moved, size) / count
    present = count > 0
    owner = np.arange(size) // N_BANDS
    x = np.tile(LOG_WAVELENGTH, n_epochs)
    n_bands = np.bincount(owner, present, n_epochs)
    with np.errstate(invalid="ignore", divide="ignore"):
        x_mean = np.bincount(owner, np.where(present, x, 0.0), n_epochs) / n_bands
        y_mean = np.bincount(owner, np.where(present, y, 0.0), n_epochs) / n_bands
        dx = x - x_mean[owner]
        num = np.bincount(owner, np.where(present, dx * (y - y_mean[owner]), 0.0), n_epochs)
        den = np.bincount(owner, np.where(present, dx * dx, 0.0), n_epochs)
        # magnitude rises (fainter) towards the blue for a red source: slope of m against -log(lambda)
        epoch_slope = -num / den
    valid = np.flatnonzero(n_bands >= 2)
    if len(valid) == 0:
        return first_s, last_s, first_t, last_t
    owners = epoch_curve[valid]
    firsts, lasts = group_firsts(owners), group_lasts(owners)
    has = owners[firsts]
    first_s[has], last_s[has] = epoch_slope[valid[firsts]], epoch_slope[valid[lasts]]
    first_t[has], last_t[has] = t_ref[valid[firsts]], t_ref[valid[lasts]]
    return first_s, last_s, first_t, last_t


def nearest_optical_colour(c: np.ndarray, t: np.ndarray, m: np.ndarray, b: np.ndarray, slope: np.ndarray) -> np.ndarray:
    """The latest near-infrared point against the optical (g r i) point nearest it in time, within a day.

    ``m_optical - (m_nir + slope * (t_optical - t_nir))``: the near-infrared point moved to the optical
    point's time with the fading rate ``slope`` (none where it is ``nan``).
    """
    n = len(slope)
    out = np.full(n, np.nan)
    latest_nir = np.full(n, -1)
    nir = np.flatnonzero(b >= BANDS.index("J"))
    if len(nir) == 0:
        return out
    ends = group_lasts(c[nir])
    latest_nir[c[nir][ends]] = nir[ends]
    optical = np.flatnonzero((b >= BANDS.index("g")) & (b <= BANDS.index("i")) & (latest_nir[c] >= 0))
    if len(optical) == 0:
        return out
    co = c[optical]
    jn = latest_nir[co]
    curves, nearest = first_min(np.abs(t[optical] - t[jn]), co)
    jo, jn = optical[nearest], latest_nir[curves]
    close = np.abs(t[jo] - t[jn]) <= 1.0
    shift = np.where(np.isnan(slope), 0.0, slope)[curves]
    out[curves[close]] = (m[jo] - (m[jn] + shift * (t[jo] - t[jn])))[close]
    return out


def postdet_fade_rates(
    c: np.ndarray,
    t: np.ndarray,
    m: np.ndarray,
    b: np.ndarray,
    limit_c: np.ndarray,
    limit_t: np.ndarray,
    limit_m: np.ndarray,
    limit_b: np.ndarray,
    n: int,
) -> np.ndarray:
    """A lower bound on the fading rate from the upper limits after the first detection (mag/day).

    For each limit, the latest earlier detection in the same band, else in the nearest band by wavelength
    (the latest of those); a limit deeper than that detection bounds the rate from below by
    ``(limit - m) / (t_limit - t)``. The largest bound of each light curve, ``nan`` where none.
    """
    out = np.full(n, -np.inf)
    if len(limit_c) == 0 or len(c) == 0:
        return np.full(n, np.nan)
    # times as integer ranks, so that (light curve, band, time) is one sortable integer key
    _, rank = np.unique(np.concatenate((t, limit_t)), return_inverse=True)
    n_ranks = int(rank.max()) + 1
    det_rank, limit_rank = rank[: len(t)], rank[len(t) :]
    key = (c * N_BANDS + b).astype(np.int64) * n_ranks + det_rank
    order = np.argsort(key, kind="stable")  # ties (same time) keep the points' order: the latest is last
    sorted_key = key[order]
    # per limit and band: the last detection before the limit (the one just below its key), if of that band
    group = (limit_c[:, None] * N_BANDS + np.arange(N_BANDS)[None, :]).astype(np.int64)
    pos = np.searchsorted(sorted_key, group * n_ranks + limit_rank[:, None], side="left") - 1
    found = (pos >= 0) & (sorted_key[np.maximum(pos, 0)] // n_ranks == group)
    latest = np.where(found, order[np.maximum(pos, 0)], -1)
    distance = np.abs(np.arange(N_BANDS)[None, :] - limit_b[:, None])
    distance = np.where(latest >= 0, distance, N_BANDS)
    nearest = distance.min(axis=1)
    j = np.where(distance == nearest[:, None], latest, -1).max(axis=1)
    has = j >= 0
    j = np.maximum(j, 0)
    bound = has & (limit_m > m[j]) & (limit_t - t[j] > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        rates = (limit_m - m[j]) / (limit_t - t[j])
    np.maximum.at(out, limit_c[bound], rates[bound])
    return np.where(np.isneginf(out), np.nan, out)
