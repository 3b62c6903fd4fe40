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
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "BANDS",
    "BAND_WAVELENGTH_AA",
    "FEATURE_NAMES",
    "GW_FEATURE_NAMES",
    "VEGA_TO_AB",
    "GWContext",
    "Observation",
    "canonical_band",
    "detections",
    "extract_features",
    "photometric_band",
    "unused_bands",
]

BANDS = ("u", "g", "r", "i", "z", "y", "J", "H", "K")
"""The canonical bands, blue to red."""

BAND_WAVELENGTH_AA = {
    "u": 3560.0,
    "g": 4750.0,
    "r": 6250.0,
    "i": 7650.0,
    "z": 9000.0,
    "y": 9800.0,
    "J": 12350.0,
    "H": 16620.0,
    "K": 21590.0,
}
"""Effective wavelengths of the canonical bands (Angstrom; SDSS/PS1/Rubin-like ugrizy, 2MASS JHKs)."""

VEGA_TO_AB = {
    "U": 0.79,
    "B": -0.09,
    "V": 0.02,
    "R": 0.21,
    "I": 0.45,
    "J": 0.91,
    "H": 1.39,
    "K": 1.85,
    "Y": 0.634,
    "u": 0.91,
    "g": -0.08,
    "r": 0.16,
    "i": 0.37,
    "z": 0.54,
    "y": 0.634,
}
"""``m_AB - m_Vega`` per filter (Blanton & Roweis 2007 table 1; Y: Hewett et al. 2006). Keys are filters
(Johnson-Cousins capitals, SDSS lower case, 2MASS J H K(s)), before the mapping to canonical bands."""

# (filter key, canonical band, default system). Keys are compared after removing spaces, "_", "-", ":" and
# "." and lower-casing, except the single capital letters of Johnson-Cousins (U B V R I) and Y, which are
# told apart from SDSS/Rubin u ... y by their case. B and V map to g (nearest in wavelength), R to r, I to i.
_JOHNSON = {"U": "u", "B": "g", "V": "g", "R": "r", "I": "i"}
_PREFIXES = (
    "ztf",
    "z",
    "sdss",
    "ps1",
    "ps",
    "panstarrs",
    "decam",
    "des",
    "lsst",
    "rubin",
    "megacam",
    "hsc",
    "skymapper",
    "atlas",
    "gaia",
    "uvot",
    "2mass",
    "ukirt",
    "vista",
    "wircam",
    "grond",
    "tmass",
)
_BAND_ALIASES = {
    **{b: b for b in "ugrizy"},
    **{b.lower(): b for b in "JHK"},
    "ks": "K",
    "kp": "K",
    "kshort": "K",
    "j1": "y",
    **{f"{b}p": b for b in "ugriz"},
    "yy": "y",
    # ZTF alert packets: fid 1, 2, 3
    "1": "g",
    "2": "r",
    "3": "i",
    # HST ACS/WFC3 (AB), to the nearest canonical band
    "f336w": "u",
    "f350lp": None,
    "f438w": "g",
    "f475w": "g",
    "f555w": "g",
    "f606w": "r",
    "f625w": "r",
    "f775w": "i",
    "f814w": "i",
    "f850lp": "z",
    "f850w": "z",
    "f098m": "y",
    "f105w": "y",
    "f110w": "J",
    "f125w": "J",
    "f140w": "H",
    "f160w": "H",
    # ATLAS cyan/orange are broad: c between g and r, o between r and i
    "c": None,
    "o": None,
}


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


def _key(band: str) -> str:
    return "".join(ch for ch in str(band).strip() if ch not in " _-:.'")


@functools.lru_cache(maxsize=4096)
def photometric_band(band: str, system: str | None = None) -> tuple[str, float] | None:
    """Canonical band of a filter name and the offset that makes its magnitudes AB.

    Parameters
    ----------
    band
        The filter as written by a survey or a paper.
    system
        ``"AB"``, ``"Vega"`` or None (the band's usual system).

    Returns
    -------
    (band, offset) or None
        ``m_AB = m + offset``; None when the classifier cannot place the filter (unfiltered, UV, broad
        survey bands...).

    Raises
    ------
    ValueError
        ``system`` is neither AB nor Vega.

    The answer is cached per (band, system): a survey writes few distinct names.

    Examples
    --------
    >>> photometric_band("ztfg"), photometric_band("ps1::i"), photometric_band("lsstr")
    (('g', 0.0), ('i', 0.0), ('r', 0.0))
    >>> photometric_band("R"), photometric_band("Ks"), photometric_band("F814W"), photometric_band("J", "AB")
    (('r', 0.21), ('K', 1.85), ('i', 0.0), ('J', 0.0))
    >>> photometric_band("w") is None, photometric_band("UVW1") is None
    (True, True)
    """
    raw = _key(band)
    if system is not None and str(system).strip().lower() not in ("ab", "vega", ""):
        raise ValueError(f"photometric system {system!r} of band {band!r}: only AB and Vega are understood")
    vega_given = system is not None and str(system).strip().lower() == "vega"
    ab_given = system is not None and str(system).strip().lower() == "ab"
    if len(raw) == 1 and raw in _JOHNSON:
        canonical, filt, default_vega = _JOHNSON[raw], raw, True
    elif raw == "Y":
        canonical, filt, default_vega = "y", "Y", False
    else:
        low = raw.lower()
        canonical = _BAND_ALIASES.get(low) if low in _BAND_ALIASES else None
        if canonical is None and low not in _BAND_ALIASES:
            for prefix in _PREFIXES:
                rest = low[len(prefix) :]
                if low.startswith(prefix) and rest in _BAND_ALIASES and rest not in ("1", "2", "3"):
                    canonical = _BAND_ALIASES[rest]
                    break
        if canonical is None:
            return None
        filt = canonical if canonical in "JHK" else low[-1] if low[-1] in "ugrizy" else canonical
        default_vega = canonical in "JHK" and not low.startswith("f")
    vega = vega_given or (default_vega and not ab_given)
    offset = VEGA_TO_AB.get(filt, VEGA_TO_AB.get(canonical, 0.0)) if vega else 0.0
    return canonical, offset


def canonical_band(band: str) -> str | None:
    """The canonical band of a filter name, or None when the classifier cannot place it.

    Examples
    --------
    >>> canonical_band("ZTF_r"), canonical_band("DECam-z"), canonical_band("F775W"), canonical_band("V")
    ('r', 'z', 'i', 'g')
    >>> canonical_band("UVW2") is None
    True
    """
    placed = photometric_band(band)
    return None if placed is None else placed[0]


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


# Two points in different bands closer than this in time (days) make a colour.
_COLOUR_PAIR_MAX_DT = 0.5
# A slope needs points spread over at least this time (days).
_MIN_SLOPE_SPAN = 0.1
# "Recent" fading: detections within this many days of the latest one.
_RECENT_DAYS = 3.0
# Added in quadrature to every magnitude error (calibration across telescopes), and the error assumed
# where none is given.
_ERROR_FLOOR = 0.03
_DEFAULT_ERROR = 0.1
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
    *(f"slope_{group}" for group in _GROUPS),
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


def _usable(observations: Sequence[Observation]) -> list[tuple[float, str, float, float, bool]]:
    """(mjd, band, AB magnitude, error, upper_limit) of the placed points with finite values, by time."""
    points = []
    for obs in observations:
        placed = _placed(obs)
        if placed is None:
            continue
        mjd, mag = float(obs.mjd), float(obs.magnitude)
        if not (math.isfinite(mjd) and math.isfinite(mag)):
            continue
        err = obs.magnitude_error
        err = float(err) if err is not None and math.isfinite(float(err)) and float(err) > 0 else _DEFAULT_ERROR
        points.append((mjd, placed[0], mag + placed[1], err, bool(obs.upper_limit)))
    points.sort(key=lambda p: (p[0], BANDS.index(p[1]), p[4]))
    return points


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


def _weights(err: np.ndarray) -> np.ndarray:
    return 1.0 / (err**2 + _ERROR_FLOOR**2)


def _common_slope(t: np.ndarray, m: np.ndarray, b: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """Error-weighted slope of all bands with one intercept per band (colours held constant), and its error."""
    num = den = 0.0
    resid_terms = []
    for band in sorted(set(b.tolist()), key=BANDS.index):  # a fixed order: the same sums on every run
        sel = b == band
        if sel.sum() < 2:
            continue
        ws = w[sel]
        tm = np.dot(ws, t[sel]) / ws.sum()
        mm = np.dot(ws, m[sel]) / ws.sum()
        dt = t[sel] - tm
        num += float(np.dot(ws * dt, m[sel] - mm))
        den += float(np.dot(ws * dt, dt))
        resid_terms.append((sel, tm, mm))
    # the minimum spread of times: _MIN_SLOPE_SPAN between two points, in weighted variance terms
    if not resid_terms or den <= 0:
        return math.nan, math.nan
    spread = sum(float(np.ptp(t[sel])) for sel, _, _ in resid_terms)
    if spread < _MIN_SLOPE_SPAN:
        return math.nan, math.nan
    slope = num / den
    # the formal error, inflated by the scatter about the fit when it is larger than the errors say
    chi2 = n = 0.0
    for sel, tm, mm in resid_terms:
        r = m[sel] - (mm + slope * (t[sel] - tm))
        chi2 += float(np.dot(w[sel], r * r))
        n += int(sel.sum())
    dof = n - len(resid_terms) - 1
    scale = max(1.0, chi2 / dof) if dof > 0 else 1.0
    return slope, math.sqrt(scale / den)


def _sed_slopes(t: np.ndarray, m: np.ndarray, b: np.ndarray, slope: float) -> list[tuple[float, float]]:
    """(time, spectral slope) of each epoch with two bands within ``_COLOUR_PAIR_MAX_DT`` days.

    The slope is ``(m_blue - m_red) / log10(lambda_red / lambda_blue)``: magnitudes per decade of wavelength,
    positive for a source redder than flat in f_nu. Points are moved to a common time with the fading rate.
    """
    shift = 0.0 if math.isnan(slope) else slope
    order = np.argsort(t, kind="stable")
    t, m, b = t[order], m[order], b[order]
    result = []
    i, n = 0, len(t)
    while i < n:
        j = i
        while j + 1 < n and t[j + 1] - t[i] <= _COLOUR_PAIR_MAX_DT:
            j += 1
        bands = sorted(set(b[i : j + 1].tolist()), key=BANDS.index)
        if len(bands) >= 2:
            t_ref = float(t[i])
            xs, ys = [], []
            for band in bands:
                sel = b[i : j + 1] == band
                mm = m[i : j + 1][sel] - shift * (t[i : j + 1][sel] - t_ref)
                xs.append(_LOG_WAVELENGTH[band])
                ys.append(float(mm.mean()))
            x, y = np.array(xs), np.array(ys)
            dx = x - x.mean()
            # magnitude rises (fainter) towards the blue for a red source: slope of m against -log(lambda)
            result.append((t_ref, float(-np.dot(dx, y - y.mean()) / np.dot(dx, dx))))
        i = j + 1
    return result


def extract_features(observations: Sequence[Observation], context: GWContext | None = None) -> dict[str, float]:
    """Compute the classifier's features of a (partial) light curve.

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
    points = _usable(observations)
    features = dict.fromkeys(FEATURE_NAMES, math.nan)
    dets = [p for p in points if not p[4]]
    features["n_detections"] = float(len(dets))
    if not dets:
        return features
    t = np.array([p[0] for p in dets])
    b = np.array([p[1] for p in dets])
    m = np.array([p[2] for p in dets])
    e = np.array([p[3] for p in dets])
    w = _weights(e)
    t_first, t_last = float(t[0]), float(t[-1])
    features["n_bands"] = float(len(set(b.tolist())))
    features["span_days"] = t_last - t_first
    features["median_mag_err"] = float(np.median(e))

    slope_all, slope_err = _common_slope(t, m, b, w)
    features["slope_all"], features["slope_all_err"] = slope_all, slope_err
    recent = t >= t_last - _RECENT_DAYS
    features["slope_recent"] = _common_slope(t[recent], m[recent], b[recent], w[recent])[0]
    for group, members in _GROUPS.items():
        sel = np.isin(b, members)
        if sel.sum() >= 2:
            features[f"slope_{group}"] = _common_slope(t[sel], m[sel], b[sel], w[sel])[0]

    # peak and fade in the band with most detections (ties: the one nearest r)
    counts = {band: int((b == band).sum()) for band in sorted(set(b.tolist()), key=BANDS.index)}
    main = max(counts, key=lambda band: (counts[band], -abs(BANDS.index(band) - 2)))
    tm, mm = t[b == main], m[b == main]
    k = int(np.argmin(mm))
    features["fade_from_peak"] = float(mm[-1] - mm[k])
    features["rise_to_peak"] = float(mm[0] - mm[k])
    features["days_since_peak"] = float(tm[-1] - tm[k])
    bright = tm[mm <= mm[k] + 0.75]  # within a factor 2 of the peak flux
    features["duration_half_peak"] = float(bright[-1] - bright[0])

    sed = _sed_slopes(t, m, b, slope_all)
    if sed:
        features["sed_slope_first"], features["sed_slope_last"] = sed[0][1], sed[-1][1]
        if sed[-1][0] - sed[0][0] >= _COLOUR_PAIR_MAX_DT:
            features["sed_slope_rate"] = (sed[-1][1] - sed[0][1]) / (sed[-1][0] - sed[0][0])
    nir = np.isin(b, ("J", "H", "K"))
    optical = np.isin(b, ("g", "r", "i"))
    if nir.any() and optical.any():
        # the latest near-infrared point against the optical point nearest it in time (moved with the slope)
        jn = int(np.flatnonzero(nir)[-1])
        jo = int(np.flatnonzero(optical)[np.argmin(np.abs(t[optical] - t[jn]))])
        if abs(t[jo] - t[jn]) <= 1.0:
            shift = 0.0 if math.isnan(slope_all) else slope_all
            features["nir_minus_optical"] = float(m[jo] - (m[jn] + shift * (t[jo] - t[jn])))
    features["reddest_wavelength"] = max(BAND_WAVELENGTH_AA[band] for band in counts) / 1e4

    # upper limits: the last one before the first detection, and every one after the first detection
    before = [p for p in points if p[4] and p[0] < t_first]
    if before:
        ul = before[-1]
        gap = t_first - ul[0]
        features["predet_gap_days"] = gap
        # positive: the first detection is brighter than an earlier limit, so the source is new or rising
        features["predet_depth"] = ul[2] - float(m[0])
        if gap > 0 and ul[2] > m[0]:
            features["predet_rise_rate"] = (ul[2] - float(m[0])) / max(gap, 0.01)
    after = [p for p in points if p[4] and p[0] > t_first]
    features["n_limits_after_first"] = float(len(after))
    bounds = []
    for ul_t, ul_band, ul_mag, _, _ in after:
        earlier = t < ul_t
        # the latest earlier detection in the same band, else in the nearest band by wavelength
        same = earlier & (b == ul_band)
        pool = same if same.any() else earlier
        if not pool.any():
            continue
        idx = np.flatnonzero(pool)
        if not same.any():
            dist = [abs(BANDS.index(band) - BANDS.index(ul_band)) for band in b[idx]]
            idx = idx[np.array(dist) == min(dist)]
        j = int(idx[-1])
        if ul_mag > m[j] and ul_t - t[j] > 0:
            bounds.append((ul_mag - float(m[j])) / (ul_t - float(t[j])))
    if bounds:
        # a lower bound on the fading rate: the source went below a deeper limit
        features["postdet_fade_rate"] = max(bounds)

    if context is not None:
        features["days_since_merger_first"] = t_first - float(context.merger_mjd)
        features["days_since_merger_last"] = t_last - float(context.merger_mjd)
        if context.distance_mpc is not None and context.distance_mpc > 0:
            modulus = 5.0 * math.log10(float(context.distance_mpc) * 1e5)
            features["abs_mag_peak"] = float(m.min()) - modulus
            features["abs_mag_last"] = float(m[-1]) - modulus
        if context.credible_level is not None:
            features["credible_level"] = float(context.credible_level)
    return features
