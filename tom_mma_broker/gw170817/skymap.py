"""Flat HEALPix sky maps to multi-order (NUNIQ) ones, as LVK alerts carry them.

A flat map has one probability per pixel at a single resolution. A multi-order map keeps
fine pixels where the probability is high and coarse ones elsewhere. :func:`flat_to_multiorder`
builds one bottom-up: in NESTED ordering the four children of a pixel are consecutive, and a
group of four sibling leaves is merged into its parent when their total probability is below
``max_merged_prob``, from the finest order up to ``min_order``. Every merged pixel therefore holds
less than ``max_merged_prob``; the total probability is preserved exactly (up to rounding).

Distance columns (the ansatz of Singer et al. 2016, ApJL 829 L15: ``p(r | n) = DISTNORM r^2
N(r; DISTMU, DISTSIGMA)``) are merged by matching moments: the parent's conditional distance mean
and second moment are the probability-weighted means of its children's, converted back to
``DISTMU, DISTSIGMA, DISTNORM`` (:func:`parameters_to_moments`, :func:`moments_to_parameters`).
Pixels without distance information carry ``DISTMU=inf, DISTSIGMA=1, DISTNORM=0``, as in LVK maps.

No dependency on ``ligo.skymap`` (it is used in the tests to cross-check).
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Mapping
from os import PathLike

import numpy as np
from astropy.io import fits
from astropy.table import Table

__all__ = [
    "read_flat_skymap",
    "flat_to_multiorder",
    "multiorder_fits_bytes",
    "read_multiorder_fits",
    "parameters_to_moments",
    "moments_to_parameters",
    "uniq_to_order_ipix",
    "most_probable_position",
    "credible_area",
]

logger = logging.getLogger(__name__)

_DIST_COLUMNS = ("DISTMU", "DISTSIGMA", "DISTNORM")
# header cards copied from the flat map to the multi-order one (LVK maps carry these)
_COPIED_CARDS = (
    "COORDSYS",
    "OBJECT",
    "REFERENC",
    "INSTRUME",
    "DATE-OBS",
    "MJD-OBS",
    "DATE",
    "CREATOR",
    "ORIGIN",
    "RUNTIME",
    "DISTMEAN",
    "DISTSTD",
    "LOGBCI",
    "LOGBSN",
    "VCSVERS",
    "VCSREV",
    "DATE-BLD",
)
# bisection bounds of x = DISTMU / DISTSIGMA; below -20 the distance carries no information
_X_MIN, _X_MAX = -20.0, 1e6
_SQRT1_2 = 1.0 / math.sqrt(2.0)
_erfc = np.vectorize(math.erfc, otypes=[float])


def read_flat_skymap(path: str | PathLike | io.IOBase) -> tuple[dict[str, np.ndarray], fits.Header]:
    """Read a flat HEALPix FITS sky map (gzipped or not) into NESTED-ordered columns.

    Parameters
    ----------
    path : path or file object
        The FITS file; its first table HDU holds ``PROB`` (per pixel) and optionally
        ``DISTMU``, ``DISTSIGMA``, ``DISTNORM``, in RING or NESTED order (header ``ORDERING``).

    Returns
    -------
    columns : dict of str to ndarray
        ``PROB`` and any distance columns, NESTED order.
    header : astropy.io.fits.Header
        The table's header.
    """
    with fits.open(path) as hdus:
        hdu = next(h for h in hdus if isinstance(h, fits.BinTableHDU))
        header = hdu.header.copy()
        table = Table.read(hdu)
    ordering = str(header.get("ORDERING", "RING")).upper()
    if ordering not in ("RING", "NESTED"):
        raise ValueError(f"not a flat HEALPix map: ORDERING={ordering!r}")
    npix = len(table)
    nside = int(header.get("NSIDE") or math.isqrt(npix // 12))
    if 12 * nside * nside != npix or nside & (nside - 1):
        raise ValueError(f"{npix} pixels is not a HEALPix map with a power-of-two NSIDE")
    names = ["PROB", *[c for c in _DIST_COLUMNS if c in table.colnames]]
    if "PROB" not in table.colnames:
        raise ValueError("the sky map has no PROB column")
    columns = {name: np.asarray(table[name], dtype=float).ravel() for name in names}
    if ordering == "RING":
        from astropy_healpix import HEALPix

        nested_index = HEALPix(nside=nside, order="ring").ring_to_nested(np.arange(npix))
        for name, values in columns.items():
            reordered = np.empty_like(values)
            reordered[nested_index] = values
            columns[name] = reordered
    return columns, header


def _phi_cdf_pdf(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    cdf = 0.5 * _erfc(-x * _SQRT1_2)
    pdf = np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
    return cdf, pdf


def _shape_moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``J_k(x) = integral_0^inf u^k N(u; x, 1) du`` for k = 2, 3, 4."""
    cdf, pdf = _phi_cdf_pdf(x)
    x2 = x * x
    j2 = (x2 + 1.0) * cdf + x * pdf
    j3 = x * (x2 + 3.0) * cdf + (x2 + 2.0) * pdf
    j4 = (x2 * x2 + 6.0 * x2 + 3.0) * cdf + x * (x2 + 5.0) * pdf
    return j2, j3, j4


def parameters_to_moments(distmu: np.ndarray, distsigma: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Conditional distance mean, standard deviation and ``DISTNORM`` of the distance ansatz.

    Parameters
    ----------
    distmu, distsigma : array_like
        Location and scale of ``p(r) ∝ r^2 N(r; distmu, distsigma)``, ``r > 0``.

    Returns
    -------
    mean, std, norm : ndarray
        ``inf, 1, 0`` where ``distmu`` is infinite (no distance information).

    Examples
    --------
    >>> mean, std, norm = parameters_to_moments(np.array([40.0]), np.array([8.0]))
    >>> [round(float(v), 4) for v in (mean[0], std[0], norm[0])]
    [43.0769, 7.7107, 0.0006]
    """
    mu = np.asarray(distmu, dtype=float)
    sigma = np.asarray(distsigma, dtype=float)
    mean = np.full(np.broadcast(mu, sigma).shape, np.inf)
    std = np.ones_like(mean)
    norm = np.zeros_like(mean)
    mu, sigma = np.broadcast_arrays(mu, sigma)
    ok = np.isfinite(mu) & np.isfinite(sigma) & (sigma > 0)
    if ok.any():
        x = np.maximum(mu[ok] / sigma[ok], _X_MIN)
        j2, j3, j4 = _shape_moments(x)
        s = sigma[ok]
        mean[ok] = s * j3 / j2
        std[ok] = s * np.sqrt(np.maximum(j4 / j2 - (j3 / j2) ** 2, 0.0))
        norm[ok] = 1.0 / (s * s * j2)
    return mean, std, norm


def _cv(x: np.ndarray) -> np.ndarray:
    """Coefficient of variation (std / mean) of the ansatz as a function of x = mu / sigma."""
    j2, j3, j4 = _shape_moments(x)
    m1 = j3 / j2
    return np.sqrt(np.maximum(j4 / j2 - m1 * m1, 0.0)) / m1


def moments_to_parameters(
    mean: np.ndarray, std: np.ndarray, iterations: int = 100
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``DISTMU, DISTSIGMA, DISTNORM`` of the ansatz with this conditional mean and std.

    The ansatz's std/mean depends only on ``x = DISTMU/DISTSIGMA`` and decreases from
    ``1/sqrt(3)`` (x -> -inf) to 0; x is found by bisection. Where no x fits (a std/mean above
    the ansatz's maximum, or an infinite mean) the result is ``inf, 1, 0``.

    Examples
    --------
    >>> mean, std, _ = parameters_to_moments(np.array([40.0]), np.array([8.0]))
    >>> mu, sigma, norm = moments_to_parameters(mean, std)
    >>> [round(float(v), 6) for v in (mu[0], sigma[0])]
    [40.0, 8.0]
    """
    mean = np.asarray(mean, dtype=float)
    std = np.asarray(std, dtype=float)
    mu = np.full(np.broadcast(mean, std).shape, np.inf)
    sigma = np.ones_like(mu)
    norm = np.zeros_like(mu)
    mean, std = np.broadcast_arrays(mean, std)
    with np.errstate(divide="ignore", invalid="ignore"):
        cv = std / mean
    ok = np.isfinite(mean) & (mean > 0) & np.isfinite(cv) & (cv > 0) & (cv < _cv(np.array([_X_MIN]))[0])
    if ok.any():
        target = cv[ok]
        lo = np.full(target.shape, _X_MIN)
        hi = np.full(target.shape, _X_MAX)
        for _ in range(iterations):
            mid = 0.5 * (lo + hi)
            above = _cv(mid) > target  # cv decreases with x: the root is right of mid
            lo = np.where(above, mid, lo)
            hi = np.where(above, hi, mid)
        x = 0.5 * (lo + hi)
        j2, j3, _ = _shape_moments(x)
        s = mean[ok] / (j3 / j2)
        mu[ok] = x * s
        sigma[ok] = s
        norm[ok] = 1.0 / (s * s * j2)
    return mu, sigma, norm


def uniq_to_order_ipix(uniq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """HEALPix order and NESTED index of NUNIQ pixel ids (``uniq = 4 * 4**order + ipix``).

    Examples
    --------
    >>> uniq_to_order_ipix(np.array([4, 1058]))
    (array([0, 4]), array([ 0, 34]))
    """
    uniq = np.asarray(uniq, dtype=np.int64)
    order = (np.floor(np.log2(uniq)).astype(np.int64) - 2) // 2
    return order, uniq - 4 * (np.int64(1) << (2 * order))


def _pixel_area(order: np.ndarray | int) -> np.ndarray:
    return 4.0 * np.pi / (12.0 * 4.0 ** np.asarray(order, dtype=float))


def flat_to_multiorder(
    columns: Mapping[str, np.ndarray], *, max_merged_prob: float = 1e-5, min_order: int = 4
) -> Table:
    """Adaptively coarsen a flat NESTED map into a multi-order one.

    Parameters
    ----------
    columns : mapping of str to ndarray
        ``PROB`` (probability per pixel, NESTED) and optionally ``DISTMU``, ``DISTSIGMA``,
        ``DISTNORM``, as :func:`read_flat_skymap` returns them.
    max_merged_prob : float
        Four sibling pixels are merged only while their total probability is below this.
    min_order : int
        Coarsest order of the result (LVK's BAYESTAR maps start at order 4).

    Returns
    -------
    astropy.table.Table
        Columns ``UNIQ`` (int64), ``PROBDENSITY`` (sr^-1) and the distance columns, sorted by UNIQ.

    Examples
    --------
    >>> flat = {"PROB": np.full(12 * 4**2, 1 / (12 * 4**2))}
    >>> moc = flat_to_multiorder(flat, max_merged_prob=0.05, min_order=0)
    >>> len(moc), round(float(np.sum(moc["PROBDENSITY"] * 4 * np.pi / (12 * 4**1))), 12)
    (48, 1.0)
    """
    prob = np.asarray(columns["PROB"], dtype=float)
    npix = prob.size
    max_order = int(round(math.log(npix / 12, 4)))
    if 12 * 4**max_order != npix:
        raise ValueError(f"{npix} pixels is not a HEALPix map with a power-of-two NSIDE")
    min_order = max(0, min(min_order, max_order))
    has_dist = all(c in columns for c in _DIST_COLUMNS)
    if has_dist:
        mean, std, _ = parameters_to_moments(columns["DISTMU"], columns["DISTSIGMA"])
        # no distance information where DISTNORM is 0 or the mean is not finite
        informative = np.isfinite(mean) & (np.asarray(columns["DISTNORM"]) > 0)
        m1 = np.where(informative, mean, 0.0)
        m2 = np.where(informative, std * std + mean * mean, 0.0)
        # weight of a pixel's distance moments: its probability, only where informative
        w = np.where(informative, prob, 0.0)

    leaves: list[tuple[int, np.ndarray, np.ndarray, tuple[np.ndarray, ...]]] = []
    alive = np.ones(npix, dtype=bool)
    for order in range(max_order, min_order, -1):
        group_prob = prob.reshape(-1, 4).sum(axis=1)
        merge = alive.reshape(-1, 4).all(axis=1) & (group_prob < max_merged_prob)
        keep = (alive.reshape(-1, 4) & ~merge[:, None]).ravel()
        ipix = np.flatnonzero(keep)
        leaves.append((order, ipix, prob[ipix], (m1[ipix], m2[ipix], w[ipix]) if has_dist else ()))
        if has_dist:
            gw = w.reshape(-1, 4).sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                m1 = np.where(gw > 0, (w * m1).reshape(-1, 4).sum(axis=1) / gw, 0.0)
                m2 = np.where(gw > 0, (w * m2).reshape(-1, 4).sum(axis=1) / gw, 0.0)
            w = gw
        prob = group_prob
        alive = merge
    ipix = np.flatnonzero(alive)
    leaves.append((min_order, ipix, prob[ipix], (m1[ipix], m2[ipix], w[ipix]) if has_dist else ()))

    uniq = np.concatenate([4 * 4**order + ipix.astype(np.int64) for order, ipix, _, _ in leaves])
    density = np.concatenate([p / _pixel_area(order) for order, _, p, _ in leaves])
    table = Table()
    table["UNIQ"] = uniq
    table["PROBDENSITY"] = density
    table["PROBDENSITY"].unit = "sr-1"
    if has_dist:
        m1 = np.concatenate([d[0] for *_, d in leaves])
        m2 = np.concatenate([d[1] for *_, d in leaves])
        w = np.concatenate([d[2] for *_, d in leaves])
        mean = np.where(w > 0, m1, np.inf)
        std = np.sqrt(np.maximum(m2 - m1 * m1, 0.0))
        distmu, distsigma, distnorm = moments_to_parameters(mean, std)
        # pixels that were never merged keep their original parameters exactly
        original = np.concatenate([np.full(ipix.size, order == max_order) for order, ipix, _, _ in leaves])
        nested = np.concatenate([ipix for order, ipix, _, _ in leaves])[original]
        distmu[original] = columns["DISTMU"][nested]
        distsigma[original] = columns["DISTSIGMA"][nested]
        distnorm[original] = columns["DISTNORM"][nested]
        for name, values, unit in (
            ("DISTMU", distmu, "Mpc"),
            ("DISTSIGMA", distsigma, "Mpc"),
            ("DISTNORM", distnorm, "Mpc-2"),
        ):
            table[name] = values
            table[name].unit = unit
    table.sort("UNIQ")
    table.meta["MOCORDER"] = max_order
    logger.debug("multi-order map: %s pixels from %s (orders %s-%s)", len(table), npix, min_order, max_order)
    return table


def multiorder_fits_bytes(
    table: Table, header: fits.Header | Mapping[str, object] | None = None, **cards: object
) -> bytes:
    """Serialise a multi-order table as LVK does: an uncompressed FITS file, one binary table.

    Parameters
    ----------
    table : astropy.table.Table
        ``UNIQ``, ``PROBDENSITY`` and optional distance columns.
    header : astropy.io.fits.Header or mapping, optional
        The flat map's header: the cards LVK maps carry (``DATE-OBS``, ``DISTMEAN``...) and its
        ``HISTORY`` are copied.
    **cards
        More cards; they override the copied ones (``OBJECT="MS170817a"``). A value may be a
        ``(value, comment)`` tuple. ``HISTORY`` may be a list of lines, appended.

    Returns
    -------
    bytes
        The FITS file; the same input gives the same bytes.
    """
    hdu = fits.table_to_hdu(table)
    out = hdu.header
    out["PIXTYPE"] = ("HEALPIX", "HEALPIX pixelisation")
    out["ORDERING"] = ("NUNIQ", "Pixel ordering scheme: RING, NESTED, or NUNIQ")
    out["COORDSYS"] = ("C", "Ecliptic, Galactic or Celestial (equatorial)")
    out["MOC"] = (True, "Multi-order (NUNIQ) HEALPix map")
    out["MOCORDER"] = (int(table.meta.get("MOCORDER", 0)), "MOC resolution (best order)")
    out["INDXSCHM"] = ("EXPLICIT", "Indexing: IMPLICIT or EXPLICIT")
    history: list[str] = []
    if header is not None:
        source = header if isinstance(header, fits.Header) else fits.Header(dict(header))
        for key in _COPIED_CARDS:
            if key in source:
                out[key] = (source[key], source.comments[key])
        history = [str(line) for line in source.get("HISTORY", [])]
    extra_history = cards.pop("HISTORY", [])
    for key, value in cards.items():
        out[key] = value
    for line in [*history, *([extra_history] if isinstance(extra_history, str) else extra_history)]:
        out.add_history(line)
    buffer = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(buffer)
    return buffer.getvalue()


def read_multiorder_fits(data: bytes) -> tuple[Table, fits.Header]:
    """Read multi-order FITS bytes (e.g. an alert's ``event.skymap``) into a table and header."""
    with fits.open(io.BytesIO(data)) as hdus:
        hdu = hdus[1]
        return Table.read(hdu), hdu.header.copy()


def most_probable_position(table: Table) -> tuple[float, float]:
    """ICRS (ra, dec) in degrees of the centre of the pixel of highest probability density."""
    from astropy_healpix import HEALPix

    best = int(np.argmax(table["PROBDENSITY"]))
    order, ipix = uniq_to_order_ipix(np.asarray(table["UNIQ"][best : best + 1]))
    lon, lat = HEALPix(nside=2 ** int(order[0]), order="nested").healpix_to_lonlat(ipix)
    return float(lon.deg[0]), float(lat.deg[0])


def credible_area(table: Table, level: float = 0.9) -> float:
    """Area in deg^2 of the smallest region holding ``level`` of the probability.

    Pixels are taken by decreasing probability density until their probability reaches
    ``level``; the last pixel counts in full (as ligo.skymap's ``crossmatch`` does at pixel level).
    """
    order, _ = uniq_to_order_ipix(np.asarray(table["UNIQ"]))
    area = _pixel_area(order)
    density = np.asarray(table["PROBDENSITY"], dtype=float)
    ranked = np.argsort(-density, kind="stable")
    cumulative = np.cumsum(density[ranked] * area[ranked])
    count = int(np.searchsorted(cumulative, level * cumulative[-1])) + 1
    return float(np.sum(area[ranked][:count]) * (180.0 / np.pi) ** 2)
