"""Cone searches on any database, and the angular separation they end with.

A declination band and a right-ascension window (wrapping at 0/360 away from the poles) in SQL, then the exact
angular separation in Python.

Used to merge alerts into Targets (:mod:`tom_mma.targets`, which re-exports these names) and candidates on the
broker's side.
"""

from __future__ import annotations

import math
from typing import Any

from django.db import models

__all__ = ["angular_separation_deg", "cone_box", "cone_filter", "cone_prefilter"]


def angular_separation_deg(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    """Angular separation of two points on the sphere, in degrees (Vincenty's formula).

    Accurate at all separations, including tiny ones and near the poles.

    Examples
    --------
    >>> round(angular_separation_deg(359.9995, 0.0, 0.0005, 0.0) * 3600, 6)
    3.6
    >>> round(angular_separation_deg(0.0, 89.9999, 180.0, 89.9999) * 3600, 6)
    0.72
    >>> angular_separation_deg(10.0, -20.0, 10.0, -20.0)
    0.0
    """
    lon1, lat1, lon2, lat2 = map(math.radians, (ra1, dec1, ra2, dec2))
    dlon = lon2 - lon1
    sin_dlon, cos_dlon = math.sin(dlon), math.cos(dlon)
    sin1, cos1, sin2, cos2 = math.sin(lat1), math.cos(lat1), math.sin(lat2), math.cos(lat2)
    num1 = cos2 * sin_dlon
    num2 = cos1 * sin2 - sin1 * cos2 * cos_dlon
    denominator = sin1 * sin2 + cos1 * cos2 * cos_dlon
    return math.degrees(math.atan2(math.hypot(num1, num2), denominator))


def cone_box(ra: float, dec: float, radius_deg: float, ra_field: str = "ra", dec_field: str = "dec") -> models.Q:
    """A condition on rows with a position in degrees: inside a box that contains the cone (a superset of it).

    The box is a declination band; away from the poles also a right-ascension window, split in two
    where it wraps at 0/360. Rows with a null position are left out.

    Parameters
    ----------
    ra, dec, radius_deg : float
        The cone, in degrees.
    ra_field, dec_field : str
        The fields holding the position.
    """
    ra = ra % 360.0
    dec_lo, dec_hi = dec - radius_deg, dec + radius_deg
    band = models.Q(**{f"{ra_field}__isnull": False, f"{dec_field}__gte": dec_lo, f"{dec_field}__lte": dec_hi})
    if dec_hi >= 90.0 or dec_lo <= -90.0:
        return band  # the cone contains a pole: every right ascension
    max_abs_dec = max(abs(dec_lo), abs(dec_hi))
    # half-width in RA of the cone, widened slightly against rounding
    half_width = math.degrees(
        math.asin(min(1.0, math.sin(math.radians(radius_deg)) / math.cos(math.radians(max_abs_dec))))
    )
    half_width = half_width * 1.000001 + 1e-9
    if half_width >= 180.0:
        return band
    lo, hi = ra - half_width, ra + half_width
    if lo < 0.0:
        window = models.Q(**{f"{ra_field}__gte": lo + 360.0}) | models.Q(**{f"{ra_field}__lte": hi})
    elif hi >= 360.0:
        window = models.Q(**{f"{ra_field}__gte": lo}) | models.Q(**{f"{ra_field}__lte": hi - 360.0})
    else:
        window = models.Q(**{f"{ra_field}__gte": lo, f"{ra_field}__lte": hi})
    return band & window


def cone_prefilter(
    queryset: models.QuerySet,
    ra: float,
    dec: float,
    radius_deg: float,
    ra_field: str = "ra",
    dec_field: str = "dec",
) -> models.QuerySet:
    """Narrow ``queryset`` in SQL to a box that contains the cone (a superset of it; see :func:`cone_box`).

    Parameters
    ----------
    queryset : QuerySet
        Rows with a position in degrees.
    ra, dec, radius_deg : float
        The cone, in degrees.
    ra_field, dec_field : str
        The fields holding the position.
    """
    return queryset.filter(cone_box(ra, dec, radius_deg, ra_field, dec_field))


def cone_filter(
    queryset: models.QuerySet,
    ra: float,
    dec: float,
    radius_deg: float,
    ra_field: str = "ra",
    dec_field: str = "dec",
) -> list[tuple[Any, float]]:
    """Rows of ``queryset`` within ``radius_deg`` of (ra, dec), nearest first, with their separations.

    Returns
    -------
    list of (object, float)
        Each row and its separation in degrees.
    """
    found = []
    for obj in cone_prefilter(queryset, ra, dec, radius_deg, ra_field, dec_field):
        separation = angular_separation_deg(ra, dec, getattr(obj, ra_field), getattr(obj, dec_field))
        if separation <= radius_deg:
            found.append((obj, separation))
    found.sort(key=lambda pair: pair[1])
    return found
