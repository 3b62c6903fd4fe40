"""Light-curve features of the kilonova classifier: one function shared by training and inference.

A light curve is a sequence of :class:`Observation` (apparent magnitudes, any order). Only the optical
bands g, r and i (and their close equivalents, see :func:`canonical_band`) are used; other bands are
ignored, because the training data only simulate g, r and i.

No feature depends on the apparent brightness itself (distance is unknown and the synthetic magnitude
distribution would teach the model survey selection rather than physics): the features are fading
rates, colours and their change, amplitudes, time scales and what the upper limits imply.

Missing features (a band never seen, a rate that needs two points) are ``nan``; the model
(histogram gradient boosting) handles ``nan`` natively.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "BANDS",
    "FEATURE_NAMES",
    "Observation",
    "canonical_band",
    "detections",
    "extract_features",
]

BANDS = ("g", "r", "i")
"""The bands the classifier uses."""

# Band names as the Open Kilonova Catalog, ZTF, Pan-STARRS, DECam, HST and others write them, mapped to the
# nearest of g/r/i when the filter is close in wavelength and photometric system (AB). Johnson-Cousins
# B/V/R/I are Vega magnitudes, offset by up to 0.45 mag from AB: they are ignored rather than mixed in.
_BAND_ALIASES = {
    "g": "g",
    "r": "r",
    "i": "i",
    "zg": "g",
    "zr": "r",
    "zi": "i",
    "ztfg": "g",
    "ztfr": "r",
    "ztfi": "i",
    "sdssg": "g",
    "sdssr": "r",
    "sdssi": "i",
    "ps1g": "g",
    "ps1r": "r",
    "ps1i": "i",
    "decamg": "g",
    "decamr": "r",
    "decami": "i",
    "lsstg": "g",
    "lsstr": "r",
    "lssti": "i",
    "gp": "g",
    "rp": "r",
    "ip": "i",
    "g'": "g",
    "r'": "r",
    "i'": "i",
    # HST ACS/WFC3 filters close to SDSS g, r, i (AB)
    "f475w": "g",
    "f625w": "r",
    "f775w": "i",
    # ZTF alert packets: fid 1, 2, 3
    "1": "g",
    "2": "r",
    "3": "i",
}

# Two points in different bands closer than this in time (days) make a colour.
_COLOUR_PAIR_MAX_DT = 0.5
# A per-band slope needs points spread over at least this time (days).
_MIN_SLOPE_SPAN = 0.1
# "Recent" fading: detections within this many days of the latest one.
_RECENT_DAYS = 3.0

FEATURE_NAMES: tuple[str, ...] = (
    "n_detections",
    "n_bands",
    "span_days",
    "slope_all",
    "slope_recent",
    "slope_g",
    "slope_r",
    "slope_i",
    "fade_from_peak",
    "rise_to_peak",
    "days_since_peak",
    "gr_first",
    "gr_last",
    "gr_rate",
    "ri_first",
    "ri_last",
    "ri_rate",
    "predet_gap_days",
    "predet_depth",
    "postdet_fade_rate",
)
"""Names of the features, in the order the model sees them."""


@dataclass(frozen=True)
class Observation:
    """One photometric point of a light curve.

    Parameters
    ----------
    mjd
        Time (Modified Julian Date).
    band
        Filter name, e.g. ``"g"``, ``"ztfr"``, ``"i"`` (see :func:`canonical_band`).
    magnitude
        Apparent AB magnitude; for an upper limit, the limiting magnitude.
    magnitude_error
        One-sigma error, if known.
    upper_limit
        True for a non-detection (``magnitude`` is then the limit).
    """

    mjd: float
    band: str
    magnitude: float
    magnitude_error: float | None = None
    upper_limit: bool = False


def canonical_band(band: str) -> str | None:
    """Map a filter name to ``"g"``, ``"r"`` or ``"i"``, or None when the classifier ignores it.

    Examples
    --------
    >>> canonical_band("ZTF_r"), canonical_band("DECam-g"), canonical_band("F775W"), canonical_band("R")
    ('r', 'g', 'i', None)
    """
    key = "".join(ch for ch in str(band).strip() if ch not in " _-:.")
    if len(key) == 1 and key.isupper():
        return None  # Johnson-Cousins U B V R I (Vega), Gaia G, ...: not the SDSS-like g, r, i
    return _BAND_ALIASES.get(key.lower())


def _usable(observations: Sequence[Observation]) -> list[tuple[float, str, float, bool]]:
    """(mjd, band, magnitude, upper_limit) of the points in g/r/i with finite values, sorted by time."""
    points = []
    for obs in observations:
        band = canonical_band(obs.band)
        if band is None:
            continue
        mjd, mag = float(obs.mjd), float(obs.magnitude)
        if not (math.isfinite(mjd) and math.isfinite(mag)):
            continue
        points.append((mjd, band, mag, bool(obs.upper_limit)))
    points.sort(key=lambda p: (p[0], p[1]))
    return points


def detections(observations: Sequence[Observation]) -> list[Observation]:
    """The detections (not upper limits) in a band the classifier uses.

    Examples
    --------
    >>> detections([Observation(1.0, "g", 20.0), Observation(2.0, "g", 21.0, upper_limit=True),
    ...             Observation(2.0, "Ks", 19.0)])
    [Observation(mjd=1.0, band='g', magnitude=20.0, magnitude_error=None, upper_limit=False)]
    """
    return [
        obs
        for obs in observations
        if not obs.upper_limit
        and canonical_band(obs.band) is not None
        and math.isfinite(float(obs.magnitude))
        and math.isfinite(float(obs.mjd))
    ]


def _slope(t: np.ndarray, m: np.ndarray) -> float:
    """Least-squares slope dm/dt, or nan when the times span less than ``_MIN_SLOPE_SPAN``."""
    if len(t) < 2 or t.max() - t.min() < _MIN_SLOPE_SPAN:
        return math.nan
    dt = t - t.mean()
    return float(np.dot(dt, m - m.mean()) / np.dot(dt, dt))


def _common_slope(t: np.ndarray, m: np.ndarray, b: np.ndarray) -> float:
    """One slope for all bands with one intercept per band (colours held constant), or nan."""
    num = den = 0.0
    for band in BANDS:
        sel = b == band
        if sel.sum() < 2:
            continue
        dt = t[sel] - t[sel].mean()
        num += float(np.dot(dt, m[sel] - m[sel].mean()))
        den += float(np.dot(dt, dt))
    # the same minimum spread as a single-band slope, in variance terms
    if den < (_MIN_SLOPE_SPAN / 2) ** 2 * 2:
        return math.nan
    return num / den


def _colours(
    t: np.ndarray, m: np.ndarray, b: np.ndarray, blue: str, red: str, slope: float
) -> tuple[float, float, float]:
    """First colour, last colour and its rate of change (mag/day) between two bands.

    Each point of the bluer band is paired with the nearest point of the redder band within
    ``_COLOUR_PAIR_MAX_DT``; the redder magnitude is moved to the bluer point's time with the common slope.
    """
    tb, mb = t[b == blue], m[b == blue]
    tr, mr = t[b == red], m[b == red]
    if len(tb) == 0 or len(tr) == 0:
        return math.nan, math.nan, math.nan
    shift = 0.0 if math.isnan(slope) else slope
    times, colours = [], []
    for ti, mi in zip(tb, mb, strict=True):
        j = int(np.argmin(np.abs(tr - ti)))
        if abs(tr[j] - ti) <= _COLOUR_PAIR_MAX_DT:
            times.append(ti)
            colours.append(mi - (mr[j] + shift * (ti - tr[j])))
    if not colours:
        return math.nan, math.nan, math.nan
    rate = math.nan
    if times[-1] - times[0] >= _COLOUR_PAIR_MAX_DT:
        rate = (colours[-1] - colours[0]) / (times[-1] - times[0])
    return float(colours[0]), float(colours[-1]), float(rate)


def extract_features(observations: Sequence[Observation]) -> dict[str, float]:
    """Compute the classifier's features of a (partial) light curve.

    Parameters
    ----------
    observations
        The points seen so far, detections and upper limits, in any order. Points in bands other than
        g/r/i (see :func:`canonical_band`) are ignored.

    Returns
    -------
    dict
        One float per name of :data:`FEATURE_NAMES`, in that order; ``nan`` when a feature cannot be
        computed from the points given (e.g. a fading rate from a single point). Magnitude rates are in
        mag/day, positive when fading; colours in mag.

    Examples
    --------
    A source fading by 0.5 mag/day in r:

    >>> lc = [Observation(60000.0 + d, "r", 19.0 + 0.5 * d, 0.05) for d in range(4)]
    >>> f = extract_features(lc)
    >>> f["n_detections"], f["slope_r"], f["fade_from_peak"], f["days_since_peak"]
    (4.0, 0.5, 1.5, 3.0)
    >>> import math; math.isnan(f["gr_last"])
    True
    """
    points = _usable(observations)
    features = dict.fromkeys(FEATURE_NAMES, math.nan)
    dets = [p for p in points if not p[3]]
    features["n_detections"] = float(len(dets))
    if not dets:
        return features
    t = np.array([p[0] for p in dets])
    b = np.array([p[1] for p in dets])
    m = np.array([p[2] for p in dets])
    t_first, t_last = float(t[0]), float(t[-1])
    features["n_bands"] = float(len(set(b)))
    features["span_days"] = t_last - t_first

    slope_all = _common_slope(t, m, b)
    features["slope_all"] = slope_all
    recent = t >= t_last - _RECENT_DAYS
    features["slope_recent"] = _common_slope(t[recent], m[recent], b[recent])
    for band in BANDS:
        sel = b == band
        features[f"slope_{band}"] = _slope(t[sel], m[sel])

    # peak and fade in the band with most detections (ties: r, then g, then i)
    counts = {band: int((b == band).sum()) for band in BANDS}
    main = max(("r", "g", "i"), key=lambda band: counts[band])
    tm, mm = t[b == main], m[b == main]
    k = int(np.argmin(mm))
    features["fade_from_peak"] = float(mm[-1] - mm[k])
    features["rise_to_peak"] = float(mm[0] - mm[k])
    features["days_since_peak"] = float(tm[-1] - tm[k])

    gr = _colours(t, m, b, "g", "r", slope_all)
    ri = _colours(t, m, b, "r", "i", slope_all)
    features["gr_first"], features["gr_last"], features["gr_rate"] = gr
    features["ri_first"], features["ri_last"], features["ri_rate"] = ri

    # upper limits: the last one before the first detection, and the ones after the last detection
    before = [p for p in points if p[3] and p[0] < t_first]
    if before:
        last_ul = before[-1]
        features["predet_gap_days"] = t_first - last_ul[0]
        # positive: the first detection is brighter than an earlier limit, so the source is new or rising
        features["predet_depth"] = last_ul[2] - float(m[0])
    fade_bounds = []
    for ul_t, ul_band, ul_mag, _ in (p for p in points if p[3] and p[0] > t_last):
        same = b == ul_band
        ref = float(m[same][-1]) if same.any() else float(m[-1])
        ref_t = float(t[same][-1]) if same.any() else t_last
        if ul_mag > ref and ul_t - ref_t > 0:
            fade_bounds.append((ul_mag - ref) / (ul_t - ref_t))
    if fade_bounds:
        # a lower bound on the fading rate: the source went below a deeper limit
        features["postdet_fade_rate"] = max(fade_bounds)
    return features
