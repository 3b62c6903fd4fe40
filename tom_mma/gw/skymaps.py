"""Multi-order (NUNIQ) HEALPix sky maps: read, validate, summarise, and rank positions fast.

LVK sky maps are multi-order FITS binary tables (``ORDERING = 'NUNIQ'``): each row is one HEALPix pixel
named by its UNIQ index ``4 * 4**order + ipix`` (nested ``ipix``), with a probability density per steradian
(``PROBDENSITY``) and, for compact-binary maps, the distance ansatz parameters ``DISTMU``, ``DISTSIGMA``,
``DISTNORM`` of Singer et al. (2016, ApJL 829 L15). The maps are kept multi-order here: flattening the
MS181101ab map to its finest order (nside 2048) would take 50 million pixels.

Ranking a position (what ``ligo.skymap.postprocess.crossmatch`` calls ``probdensity`` and
``searched_prob``) is one HEALPix index at the map's finest order plus a binary search: a pixel of order
``o`` and nested index ``i`` covers the nested indices ``[i << 2(m - o), (i + 1) << 2(m - o))`` at the finest
order ``m``, so the pixel holding a position is found with :func:`numpy.searchsorted` over the sorted range
starts.

Nothing here touches Django but the default inflation limit (read when a call gives none); the functions are
pure and the class is immutable.
"""

from __future__ import annotations

import hashlib
import io
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Any

import astropy.units as u
import astropy_healpix as ah
import numpy as np
from astropy.io import fits

from tom_mma.inflate import GZIP_MAGIC, gunzip

from .healpix import MAX_ORDER, SQDEG_PER_SR, SkyMapError, conditional_distance_moments, uniq_to_order_ipix

__all__ = [
    "MAX_ORDER",
    "MultiOrderSkyMap",
    "Ranking",
    "SkyMapError",
    "SkyMapSummary",
    "conditional_distance_moments",
    "read_multiorder",
    "uniq_to_order_ipix",
]

# Header keys kept with a map (the others are provenance noise: HISTORY, VCS revisions...).
_META_KEYS = (
    "OBJECT",
    "CREATOR",
    "ORIGIN",
    "DATE-OBS",
    "MJD-OBS",
    "DATE",
    "INSTRUME",
    "DISTMEAN",
    "DISTSTD",
    "LOGBCI",
    "LOGBSN",
    "MOCORDER",
    "REFERENC",
)
_DIST_COLUMNS = ("DISTMU", "DISTSIGMA", "DISTNORM")


@dataclass(frozen=True)
class Ranking:
    """Where positions fall in a sky map (one array element per position).

    Attributes
    ----------
    probdensity : numpy.ndarray
        Probability density at the position, per steradian.
    credible_level : numpy.ndarray
        Probability of the smallest credible region containing the position, in ``(0, 1]``
        (``ligo.skymap``'s ``searched_prob``).
    distance_mean, distance_std : numpy.ndarray or None
        Conditional distance (Mpc) along the line of sight, NaN where unknown; None for a map without
        distance layers.
    """

    probdensity: np.ndarray
    credible_level: np.ndarray
    distance_mean: np.ndarray | None = None
    distance_std: np.ndarray | None = None


@dataclass(frozen=True)
class SkyMapSummary:
    """The figures of a sky map shown to people and stored with each version.

    Attributes
    ----------
    ra, dec : float
        Most probable position (deg): the centre of the pixel with the highest probability density.
    area_50, area_90 : float
        Area (deg^2) of the smallest regions holding 50% and 90% of the probability.
    distance_mean, distance_std : float or None
        Posterior distance (Mpc) marginalised over the sky; None for a map without distance.
    max_order, n_pixels : int
        Finest HEALPix order and number of pixels of the multi-order map.
    """

    ra: float
    dec: float
    area_50: float
    area_90: float
    distance_mean: float | None
    distance_std: float | None
    max_order: int
    n_pixels: int


@dataclass(frozen=True, eq=False)
class MultiOrderSkyMap:
    """An immutable, validated multi-order sky map.

    Build one with :func:`read_multiorder` (from FITS bytes) or directly from arrays. The arrays are kept
    in the order given (file order); derived lookups are computed once, on first use.

    Parameters
    ----------
    uniq : numpy.ndarray of int64
        UNIQ pixel indices; together they must tile the whole sky without overlap.
    probdensity : numpy.ndarray of float64
        Probability per steradian, finite and non-negative, integrating to 1 (within 1%).
    distmu, distsigma, distnorm : numpy.ndarray or None
        Distance ansatz layers, all three or none.
    meta : Mapping
        Selected FITS header keys (``OBJECT``, ``CREATOR``, ``DISTMEAN``, ``DISTSTD``, ...).
    sha256 : str
        Hex digest of the bytes the map was read from (empty when built from arrays).
    fits_bytes : bytes
        Those bytes (empty when built from arrays).

    Raises
    ------
    SkyMapError
        If the arrays do not describe a valid full-sky multi-order map.
    """

    uniq: np.ndarray
    probdensity: np.ndarray
    distmu: np.ndarray | None = None
    distsigma: np.ndarray | None = None
    distnorm: np.ndarray | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)
    sha256: str = ""
    fits_bytes: bytes = field(default=b"", repr=False)
    #: HEALPix order of each pixel (file order); set on construction.
    order: np.ndarray = field(init=False, repr=False)
    #: The finest order in the map.
    max_order: int = field(init=False)
    #: Area of each pixel in steradians (file order).
    pixel_area: np.ndarray = field(init=False, repr=False)
    _sort: np.ndarray = field(init=False, repr=False)
    _starts: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        uniq = np.ascontiguousarray(self.uniq, dtype=np.int64)
        prob = np.ascontiguousarray(self.probdensity, dtype=np.float64)
        if uniq.ndim != 1 or uniq.shape != prob.shape or uniq.size == 0:
            raise SkyMapError("UNIQ and PROBDENSITY must be non-empty 1-D columns of the same length")
        if not np.all(np.isfinite(prob)) or prob.min() < 0:
            raise SkyMapError("PROBDENSITY has negative or non-finite values")
        dist = [self.distmu, self.distsigma, self.distnorm]
        if any(d is not None for d in dist):
            if any(d is None for d in dist):
                raise SkyMapError("distance layers must come together: DISTMU, DISTSIGMA and DISTNORM")
            dist = [np.ascontiguousarray(d, dtype=np.float64) for d in dist]
            if any(d.shape != uniq.shape for d in dist):
                raise SkyMapError("distance columns differ in length from UNIQ")
        order, ipix = uniq_to_order_ipix(uniq)
        max_order = int(order.max())
        shift = 2 * (max_order - order)
        starts = np.left_shift(ipix, shift)
        sort = np.argsort(starts, kind="stable")
        starts = starts[sort]
        ends = np.left_shift(ipix[sort] + 1, shift[sort])
        # Full-sky tiling without gaps or overlaps: each pixel starts where the previous one ends.
        if starts[0] != 0 or ends[-1] != 12 * 4**max_order or np.any(starts[1:] != ends[:-1]):
            raise SkyMapError("the UNIQ pixels do not tile the sky exactly once (overlap or gap)")
        area = (4 * math.pi / 12) / np.left_shift(np.int64(1), 2 * order).astype(np.float64)
        total = float(np.dot(prob, area))
        if not 0.99 < total < 1.01:
            raise SkyMapError(f"the probability integrates to {total:.6g}, not 1")
        object.__setattr__(self, "uniq", uniq)
        object.__setattr__(self, "probdensity", prob)
        if dist[0] is not None:
            object.__setattr__(self, "distmu", dist[0])
            object.__setattr__(self, "distsigma", dist[1])
            object.__setattr__(self, "distnorm", dist[2])
        object.__setattr__(self, "meta", MappingProxyType(dict(self.meta)))
        object.__setattr__(self, "order", order)
        object.__setattr__(self, "max_order", max_order)
        object.__setattr__(self, "pixel_area", area)
        object.__setattr__(self, "_sort", sort)
        object.__setattr__(self, "_starts", starts)

    # -- per-pixel quantities (file order) ------------------------------------------------------------
    @property
    def has_distance(self) -> bool:
        """Whether the map has distance layers (compact-binary maps do, Burst maps do not)."""
        return self.distmu is not None

    @property
    def n_pixels(self) -> int:
        """Number of pixels of the multi-order map."""
        return int(self.uniq.size)

    @cached_property
    def _descending(self) -> np.ndarray:
        # Pixels by descending density; ties by descending UNIQ, as ligo.skymap's crossmatch sorts them,
        # so that cumulative sums add the same numbers in the same order.
        return np.lexsort((self.uniq, self.probdensity))[::-1]

    @cached_property
    def credible_level(self) -> np.ndarray:
        """Per pixel: probability of the smallest credible region that contains the pixel.

        The pixels sorted by descending probability density, the cumulative probability up to and
        including each one (``ligo.skymap``'s ``searched_prob``).
        """
        desc = self._descending
        cumulative = np.cumsum(self.probdensity[desc] * self.pixel_area[desc])
        levels = np.empty_like(cumulative)
        # the running sum may pass 1 by a few ulp at the end; a credible level is a probability
        levels[desc] = np.minimum(cumulative, 1.0)
        return levels

    @cached_property
    def conditional_distance(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Per pixel: conditional distance mean and standard deviation (Mpc), or None without distance."""
        if not self.has_distance:
            return None
        return conditional_distance_moments(self.distmu, self.distsigma)

    # -- summary figures --------------------------------------------------------------------------------
    @cached_property
    def most_probable_position(self) -> tuple[float, float]:
        """(RA, Dec) in degrees of the centre of the pixel of highest probability density.

        As in the LVK user guide: the first maximum of ``PROBDENSITY`` in file order, its pixel centre
        from :func:`astropy_healpix.healpix_to_lonlat` (nested).
        """
        i = int(np.argmax(self.probdensity))
        order, ipix = int(self.order[i]), int(self.uniq[i] - 4 * 4 ** int(self.order[i]))
        ra, dec = ah.healpix_to_lonlat(ipix, ah.level_to_nside(order), order="nested")
        return float(ra.deg), float(dec.deg)

    def credible_area(self, level: float) -> float:
        """Area in deg^2 of the smallest region holding probability ``level``.

        Linear interpolation of cumulative area against cumulative probability, from (0, 0), the
        convention of ``ligo.skymap``'s ``contour_areas``.
        """
        if not 0 <= level <= 1:
            raise ValueError("a credible level is between 0 and 1")
        desc = self._descending
        prob = np.concatenate([[0.0], np.cumsum(self.probdensity[desc] * self.pixel_area[desc])])
        area = np.concatenate([[0.0], np.cumsum(self.pixel_area[desc])]) * SQDEG_PER_SR
        return float(np.interp(level, prob, area, right=4 * math.pi * SQDEG_PER_SR))

    @cached_property
    def marginal_distance(self) -> tuple[float, float] | None:
        """(mean, std) in Mpc of distance over the whole sky, or None for a map without distance.

        The ``DISTMEAN``/``DISTSTD`` header values when the map has them (the figures LVK publishes),
        else the probability-weighted moments of the per-pixel conditional distances.
        """
        if not self.has_distance:
            return None
        if "DISTMEAN" in self.meta and "DISTSTD" in self.meta:
            return float(self.meta["DISTMEAN"]), float(self.meta["DISTSTD"])
        mean, std = self.conditional_distance
        weight = self.probdensity * self.pixel_area
        ok = np.isfinite(mean) & np.isfinite(std) & (weight > 0)
        if not ok.any():
            return None
        w = weight[ok] / weight[ok].sum()
        m = float(np.dot(w, mean[ok]))
        second = float(np.dot(w, std[ok] ** 2 + mean[ok] ** 2))
        return m, math.sqrt(max(second - m * m, 0.0))

    def summary(self) -> SkyMapSummary:
        """The figures stored with a sky map version (see :class:`SkyMapSummary`); computed once per map."""
        cached = self.__dict__.get("_summary")
        if cached is not None:
            return cached
        self.__dict__["_summary"] = summary = self._summary()
        return summary

    def _summary(self) -> SkyMapSummary:
        ra, dec = self.most_probable_position
        dist = self.marginal_distance
        return SkyMapSummary(
            ra=ra,
            dec=dec,
            area_50=self.credible_area(0.5),
            area_90=self.credible_area(0.9),
            distance_mean=dist[0] if dist else None,
            distance_std=dist[1] if dist else None,
            max_order=self.max_order,
            n_pixels=self.n_pixels,
        )

    # -- positions ------------------------------------------------------------------------------------
    @cached_property
    def _sorted_values(self) -> tuple[np.ndarray, ...]:
        # per-pixel values in range-start order, so that a lookup is one gather per quantity
        s = self._sort
        values = [self.probdensity[s], self.credible_level[s]]
        if self.has_distance:
            mean, std = self.conditional_distance
            values += [mean[s], std[s]]
        return tuple(values)

    def _nested_at_max_order(self, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
        ra = np.asarray(ra, dtype=np.float64)
        dec = np.asarray(dec, dtype=np.float64)
        if not (np.all(np.isfinite(ra)) and np.all(np.isfinite(dec))) or np.any(np.abs(dec) > 90):
            raise ValueError("positions must be finite, with -90 <= dec <= 90")
        return ah.lonlat_to_healpix(
            u.Quantity(ra, u.deg, copy=False),
            u.Quantity(dec, u.deg, copy=False),
            ah.level_to_nside(self.max_order),
            order="nested",
        )

    def locate(self, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
        """Index (into the file-order arrays) of the pixel holding each position.

        Parameters
        ----------
        ra, dec : array_like
            ICRS right ascension and declination in degrees.
        """
        j = np.searchsorted(self._starts, self._nested_at_max_order(ra, dec), side="right") - 1
        return self._sort[j]

    def rank(self, ra: np.ndarray, dec: np.ndarray) -> Ranking:
        """Probability density, credible level and conditional distance at each position.

        Parameters
        ----------
        ra, dec : array_like
            ICRS right ascension and declination in degrees (scalars or arrays of one shape).

        Returns
        -------
        Ranking
            Arrays of the shape of ``ra``.

        Raises
        ------
        ValueError
            For a non-finite position or ``|dec| > 90``.
        """
        j = np.searchsorted(self._starts, self._nested_at_max_order(ra, dec), side="right") - 1
        values = self._sorted_values
        if self.has_distance:
            return Ranking(values[0][j], values[1][j], values[2][j], values[3][j])
        return Ranking(values[0][j], values[1][j])


def read_multiorder(data: bytes, max_inflated_bytes: int | None = None) -> MultiOrderSkyMap:
    """Read a multi-order FITS sky map from bytes (optionally gzip-compressed) and validate it.

    Parameters
    ----------
    data : bytes
        The FITS file, as carried by an LVK notice.
    max_inflated_bytes : int, optional
        The most a gzip-compressed file may inflate to (default ``TOM_MMA['MAX_INFLATED_BYTES']``).

    Returns
    -------
    MultiOrderSkyMap

    Raises
    ------
    SkyMapError
        If the bytes are not a complete FITS file (or gzip that inflates beyond the limit), hold no NUNIQ
        binary table with ``UNIQ`` and ``PROBDENSITY`` columns, or the table is not a valid full-sky map.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise SkyMapError(f"a sky map must be bytes, not {type(data).__name__}")
    data = bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    raw = data
    if raw[:2] == GZIP_MAGIC:
        # inflated in chunks, refused past the limit: a bomb costs at most the limit (tom_mma.inflate)
        raw = gunzip(raw, limit=max_inflated_bytes, what="gzip-compressed sky map", error=SkyMapError)
    if len(raw) < 2880 or not raw.startswith(b"SIMPLE  ="):
        raise SkyMapError(f"not a FITS file ({len(raw)} bytes, no SIMPLE card)")
    if len(raw) % 2880:
        # a FITS file is whole 2880-byte blocks: anything else was cut short (or padded by a bad copy)
        raise SkyMapError(f"truncated FITS file: {len(raw)} bytes is not a whole number of 2880-byte blocks")
    try:
        # astropy warns, then raises or pads, on damaged files; the checks here say what went wrong
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(io.BytesIO(raw), memmap=False, lazy_load_hdus=False) as hdus:
                table = next((h for h in hdus[1:] if isinstance(h, fits.BinTableHDU)), None)
                if table is None:
                    raise SkyMapError("the FITS file has no binary table")
                header = table.header
                # astropy pads a truncated data unit with garbage in some versions: check the size ourselves
                needed = table._data_offset + table._data_size
                if needed > len(raw):
                    raise SkyMapError(f"truncated sky map: {len(raw)} bytes, the table needs {needed}")
                ordering = str(header.get("ORDERING", "")).strip().upper()
                if ordering != "NUNIQ":
                    raise SkyMapError(f"not a multi-order sky map (ORDERING = {ordering or 'missing'!r})")
                names = {n.upper(): n for n in table.columns.names}
                if "UNIQ" not in names or "PROBDENSITY" not in names:
                    raise SkyMapError("the table lacks a UNIQ or PROBDENSITY column")
                columns = table.data
                uniq = np.array(columns[names["UNIQ"]], dtype=np.int64)
                prob = np.array(columns[names["PROBDENSITY"]], dtype=np.float64)
                dist = {key: np.array(columns[names[key]], dtype=np.float64) for key in _DIST_COLUMNS if key in names}
                meta = {key: header[key] for key in _META_KEYS if key in header}
    except SkyMapError:
        raise
    except Exception as exc:  # astropy raises many types (OSError, TypeError, IndexError, ...) for bad bytes
        raise SkyMapError(f"corrupt or truncated sky map: {type(exc).__name__}: {exc}") from exc
    if dist and len(dist) != len(_DIST_COLUMNS):
        raise SkyMapError(f"incomplete distance layers: {sorted(dist)}")
    return MultiOrderSkyMap(
        uniq=uniq,
        probdensity=prob,
        distmu=dist.get("DISTMU"),
        distsigma=dist.get("DISTSIGMA"),
        distnorm=dist.get("DISTNORM"),
        meta=meta,
        sha256=digest,
        fits_bytes=data,
    )
