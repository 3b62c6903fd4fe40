"""HEALPix and distance arithmetic of multi-order sky maps: UNIQ indices, conditional distance moments.

Pure functions on numpy arrays, used by :mod:`tom_mma.gw.skymaps`.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import erfcx, ndtr

__all__ = ["MAX_ORDER", "SQDEG_PER_SR", "SkyMapError", "conditional_distance_moments", "uniq_to_order_ipix"]

MAX_ORDER = 29
"""The finest HEALPix order a UNIQ index in an int64 can name."""

SQDEG_PER_SR = (180.0 / math.pi) ** 2
"""Square degrees per steradian."""

_SQRT_HALF_PI = math.sqrt(math.pi / 2)
_INV_SQRT_2PI = 1.0 / math.sqrt(2 * math.pi)
_LAGUERRE = np.polynomial.laguerre.laggauss(32)


class SkyMapError(ValueError):
    """A sky map that cannot be used: corrupt, truncated, not multi-order, or inconsistent.

    The message says why, so that a quarantined notice carries a readable reason. ``permanent``: the fault is
    in the bytes, so the ingest path quarantines at the first attempt (trying again cannot help).
    """

    permanent = True


def uniq_to_order_ipix(uniq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split UNIQ indices into HEALPix order and nested pixel index, exactly (integer arithmetic).

    Parameters
    ----------
    uniq : array_like of int
        UNIQ indices, ``4 * 4**order + ipix``.

    Returns
    -------
    order, ipix : numpy.ndarray of int64

    Raises
    ------
    SkyMapError
        If an index is not a valid UNIQ index (below 4, or beyond order 29).

    Examples
    --------
    >>> order, ipix = uniq_to_order_ipix([4, 15, 16, 1058, 4 * 4**29 + 5])
    >>> order.tolist(), ipix.tolist()
    ([0, 0, 1, 4, 29], [0, 11, 0, 34, 5])
    """
    uniq = np.asarray(uniq, dtype=np.int64)
    if uniq.size and (uniq.min() < 4 or uniq.max() >= 16 * 4**MAX_ORDER):
        raise SkyMapError("UNIQ index out of range (must be in [4, 16 * 4**29))")
    # A float estimate, then an exact integer correction (log2 of a float64 may round across 2**k).
    order = (np.floor(np.log2(np.maximum(uniq, 4).astype(np.float64)) / 2) - 1).astype(np.int64)
    for _ in range(2):
        base = np.left_shift(np.int64(4), 2 * order)
        order = np.where(uniq < base, order - 1, order)
        base = np.left_shift(np.int64(4), 2 * order)
        order = np.where(uniq >= 4 * base, order + 1, order)
    ipix = uniq - np.left_shift(np.int64(4), 2 * order)
    return order, ipix


def conditional_distance_moments(distmu: np.ndarray, distsigma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of distance from the ansatz parameters of a sky map pixel.

    The ansatz of Singer et al. (2016) is
    ``p(r | n) = DISTNORM / (sqrt(2 pi) DISTSIGMA) * exp(-(r - DISTMU)**2 / (2 DISTSIGMA**2)) * r**2``
    for ``r > 0``. With ``x = DISTMU / DISTSIGMA``, ``Phi`` and ``phi`` the standard normal CDF and PDF at
    ``x``, the moments are, in units of ``DISTSIGMA``, ``M_k = integral over t > -x of (x + t)**k phi(t)``:

    - ``M2 = (x**2 + 1) Phi + x phi``,
    - ``M3 = (x**3 + 3 x) Phi + (x**2 + 2) phi``,
    - ``mean = DISTSIGMA * M3 / M2``,
    - ``var = DISTSIGMA**2 * ((x**4 + 3) Phi**2 + (2 x**3 - 4 x) Phi phi + (x**2 - 4) phi**2) / M2**2``
      (``M4 M2 - M3**2`` expanded so that the large terms cancel on paper, not in floating point).

    For ``x < 0`` everything is divided by ``phi`` (``Phi / phi`` is a scaled complementary error
    function), so a far negative ``x`` does not underflow; below ``x = -5``, where the terms of the closed
    forms cancel, the moments come from Gauss-Laguerre quadrature.

    Parameters
    ----------
    distmu, distsigma : array_like
        Location and scale parameters (Mpc).

    Returns
    -------
    mean, std : numpy.ndarray
        Conditional mean and standard deviation of distance (Mpc); NaN where the parameters are not
        finite or ``distsigma <= 0`` (LVK maps mark pixels with no distance information with
        ``DISTMU = inf``).

    Examples
    --------
    For ``mu = 0``, ``sigma = 1`` the ansatz is a chi distribution with three degrees of freedom:

    >>> mean, std = conditional_distance_moments(0.0, 1.0)
    >>> bool(np.isclose(mean, 2 * np.sqrt(2 / np.pi))), bool(np.isclose(std, np.sqrt(3 - 8 / np.pi)))
    (True, True)

    Far from the origin it is a Gaussian:

    >>> [round(float(v), 6) for v in conditional_distance_moments(1000.0, 1.0)]
    [1000.002, 0.999999]
    """
    mu = np.asarray(distmu, dtype=np.float64)
    sigma = np.asarray(distsigma, dtype=np.float64)
    mu, sigma = np.broadcast_arrays(mu, sigma)
    valid = np.isfinite(mu) & np.isfinite(sigma) & (sigma > 0)
    x = np.where(valid, mu / np.where(valid, sigma, 1.0), 0.0)
    negative = x < 0
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        # a = Phi, b = phi for x >= 0; a = Phi / phi, b = 1 for x < 0 (a common factor cancels below)
        a = np.where(negative, _SQRT_HALF_PI * erfcx(-x / math.sqrt(2)), ndtr(x))
        b = np.where(negative, 1.0, _INV_SQRT_2PI * np.exp(-0.5 * x * x))
        x2 = x * x
        m2 = (x2 + 1) * a + x * b
        m3 = (x2 * x + 3 * x) * a + (x2 + 2) * b
        var = ((x2 * x2 + 3) * a * a + (2 * x2 * x - 4 * x) * a * b + (x2 - 4) * b * b) / (m2 * m2)
        mean = np.array(sigma * m3 / m2, dtype=np.float64)
        std = np.array(sigma * np.sqrt(np.maximum(var, 0.0)), dtype=np.float64)
    # Below x = -5 the closed forms lose digits to cancellation (the variance as |x|**10). There, with
    # r = DISTSIGMA * v / |x|, the moments are integrals of v**k exp(-v) exp(-v**2 / (2 x**2)) over v > 0:
    # Gauss-Laguerre quadrature, exact to ~1e-14 for any x <= -5.
    far = valid & (x < -5)
    if np.any(far):
        s_far = -x[far][:, np.newaxis]
        nodes, weights = _LAGUERRE
        g = weights * np.exp(-0.5 * (nodes / s_far) ** 2)
        s2, s3, s4 = (g * nodes**2).sum(axis=1), (g * nodes**3).sum(axis=1), (g * nodes**4).sum(axis=1)
        scale = sigma[far] / s_far[:, 0]
        mean[far] = scale * s3 / s2
        std[far] = scale * np.sqrt(np.maximum(s4 * s2 - s3 * s3, 0.0)) / s2
    mean = np.where(valid, mean, np.nan)
    std = np.where(valid, std, np.nan)
    return mean, std
