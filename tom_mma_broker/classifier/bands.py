"""Photometric bands of the kilonova classifier: survey filter names to canonical bands and AB magnitudes.

:func:`photometric_band` maps a filter name as a survey or a paper writes it to one of the canonical bands
``u g r i z y J H K`` and to the offset that makes its magnitudes AB (:data:`VEGA_TO_AB`). Everything here is
re-exported by :mod:`~tom_mma_broker.classifier.features`, where the feature definitions use it.
"""

from __future__ import annotations

import functools

__all__ = ["BANDS", "BAND_WAVELENGTH_AA", "VEGA_TO_AB", "canonical_band", "photometric_band"]

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
