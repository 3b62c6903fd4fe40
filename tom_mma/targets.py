"""The one place that creates Targets from alerts, and the one place that assigns their permissions.

Every stream handler and broker class of ``tom_mma`` that turns an alert into a Target calls
:func:`get_or_create_target`. It merges, in this order of precedence,

1. by exact Target name (the candidate's name or any of its aliases),
2. by exact alias (``tom_targets.models.TargetName``),
3. by position: the nearest Target within ``TOM_MMA['MERGE_RADIUS_ARCSEC']``,

adds the names it did not know as aliases, and creates a Target only when nothing matches. A new
Target gets the permissions of :func:`assign_target_permissions` (the groups in
``TOM_MMA['TARGET_GROUPS']``, default ``["Public"]``, may view and change it).

The cone search works on any database: a declination band (and, away from the poles, a right
ascension window that wraps at 0/360) in SQL, then the exact angular separation in Python.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import IntegrityError, connection, models, transaction
from guardian.shortcuts import assign_perm
from tom_targets.base_models import get_target_model_app_label
from tom_targets.models import Target, TargetName

from tom_mma.conf import mma_settings

__all__ = [
    "angular_separation_deg",
    "cone_filter",
    "cone_prefilter",
    "get_or_create_target",
    "assign_target_permissions",
    "give_creator_access",
    "assign_observation_permissions",
    "target_groups",
]

logger = logging.getLogger(__name__)

#: Permissions the stream's groups get on a Target the stream created.
TARGET_GROUP_PERMISSIONS = ("view_target", "change_target")

# A constant key for PostgreSQL's transaction-level advisory lock around "look up, else create":
# it makes two workers that see the same new candidate at once create one Target, not two.
_CREATE_LOCK_KEY = 0x746F6D6D6D61  # "tommma"

_MAX_ATTEMPTS = 3


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


def cone_prefilter(
    queryset: models.QuerySet,
    ra: float,
    dec: float,
    radius_deg: float,
    ra_field: str = "ra",
    dec_field: str = "dec",
) -> models.QuerySet:
    """Narrow ``queryset`` in SQL to a box that contains the cone (a superset of it).

    The box is a declination band; away from the poles also a right-ascension window, split in two
    where it wraps at 0/360. Rows with a null position are dropped.

    Parameters
    ----------
    queryset : QuerySet
        Rows with a position in degrees.
    ra, dec, radius_deg : float
        The cone, in degrees.
    ra_field, dec_field : str
        The fields holding the position.
    """
    ra = ra % 360.0
    dec_lo, dec_hi = dec - radius_deg, dec + radius_deg
    queryset = queryset.filter(
        **{f"{ra_field}__isnull": False, f"{dec_field}__gte": dec_lo, f"{dec_field}__lte": dec_hi}
    )
    if dec_hi >= 90.0 or dec_lo <= -90.0:
        return queryset  # the cone contains a pole: every right ascension
    max_abs_dec = max(abs(dec_lo), abs(dec_hi))
    # half-width in RA of the cone, widened slightly against rounding
    half_width = math.degrees(
        math.asin(min(1.0, math.sin(math.radians(radius_deg)) / math.cos(math.radians(max_abs_dec))))
    )
    half_width = half_width * 1.000001 + 1e-9
    if half_width >= 180.0:
        return queryset
    lo, hi = ra - half_width, ra + half_width
    if lo < 0.0:
        window = models.Q(**{f"{ra_field}__gte": lo + 360.0}) | models.Q(**{f"{ra_field}__lte": hi})
    elif hi >= 360.0:
        window = models.Q(**{f"{ra_field}__gte": lo}) | models.Q(**{f"{ra_field}__lte": hi - 360.0})
    else:
        window = models.Q(**{f"{ra_field}__gte": lo, f"{ra_field}__lte": hi})
    return queryset.filter(window)


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


def _unique_names(name: str, aliases: Iterable[str]) -> list[str]:
    names = []
    for candidate in (name, *aliases):
        candidate = (candidate or "").strip()
        if candidate and candidate not in names:
            names.append(candidate)
    return names


def _find_match(
    names: Sequence[str], ra: float, dec: float, radius_arcsec: float | None = None
) -> tuple[Target | None, str]:
    """The existing Target these names/position denote, and how it matched."""
    by_name = {t.name: t for t in Target.objects.filter(name__in=names)}
    for candidate in names:  # the primary name first
        if candidate in by_name:
            return by_name[candidate], "name"
    alias = TargetName.objects.filter(name__in=names).select_related("target").first()
    if alias is not None:
        return Target.objects.get(pk=alias.target_id), "alias"
    radius = mma_settings.MERGE_RADIUS_ARCSEC if radius_arcsec is None else radius_arcsec
    radius_deg = float(radius) / 3600.0
    if radius_deg > 0:
        nearest = cone_filter(Target.objects.all(), ra, dec, radius_deg)
        if nearest:
            return nearest[0][0], "cone"
    return None, ""


def _creation_lock() -> None:
    # SQLite serialises writers already (the TOM opens transactions IMMEDIATE); PostgreSQL needs a lock,
    # because nothing exists yet that select_for_update could hold.
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_CREATE_LOCK_KEY])


def _add_aliases(target: Target, names: Sequence[str]) -> list[str]:
    """Add each name that no Target uses yet as an alias of ``target``; return those added."""
    taken = set(Target.objects.filter(name__in=names).values_list("name", flat=True))
    taken |= set(TargetName.objects.filter(name__in=names).values_list("name", flat=True))
    added = []
    for name in names:
        if name in taken:
            continue
        try:
            with transaction.atomic():
                TargetName.objects.create(target=target, name=name)
        except IntegrityError:
            # another worker added it meanwhile: it belongs to whichever Target got it first
            continue
        added.append(name)
    conflicting = [n for n in names if n in taken and not (n == target.name or target.aliases.filter(name=n).exists())]
    if conflicting:
        logger.warning(
            "Target %s matched, but the names %s belong to other targets; not merged",
            target.name,
            conflicting,
        )
    return added


def get_or_create_target(
    name: str,
    ra: float,
    dec: float,
    aliases: Iterable[str] = (),
    source: str = "alert",
    radius_arcsec: float | None = None,
    groups: Sequence[str] | None = None,
) -> tuple[Target, bool]:
    """The Target for a candidate: an existing one merged by name, alias or cone, or a new one.

    Parameters
    ----------
    name : str
        The candidate's name at the source; a new Target gets it as its name.
    ra, dec : float
        ICRS position in degrees.
    aliases : iterable of str
        Other names; each one no Target uses yet becomes an alias (``TargetName``).
    source : str
        What the alert came from, for the log.
    radius_arcsec : float, optional
        The merge cone (default ``TOM_MMA['MERGE_RADIUS_ARCSEC']``; 0 merges by name and alias only).
    groups : sequence of str, optional
        The groups a new Target is given to (default ``TOM_MMA['TARGET_GROUPS']``).

    Returns
    -------
    (Target, bool)
        The Target, and whether it was created.

    Notes
    -----
    Safe under concurrency: the look-up and the creation run in one transaction, serialised on
    PostgreSQL by an advisory lock; a unique-name collision is retried as a look-up.
    """
    names = _unique_names(name, aliases)
    if not names:
        raise ValueError("a target needs a name")
    for _attempt in range(_MAX_ATTEMPTS):
        try:
            with transaction.atomic():
                target, how = _find_match(names, ra, dec, radius_arcsec)
                if target is None:
                    _creation_lock()
                    target, how = _find_match(
                        names, ra, dec, radius_arcsec
                    )  # a worker may have created it while we waited
                if target is not None:
                    added = _add_aliases(target, names)
                    logger.info(
                        "%s %s merged into target %s by %s (new aliases: %s)",
                        source,
                        name,
                        target.name,
                        how,
                        added,
                    )
                    return target, False
                target = Target(name=names[0], type=Target.SIDEREAL, ra=ra % 360.0, dec=dec, epoch=2000.0)
                target.save()
                _add_aliases(target, names[1:])
                assign_target_permissions(target, groups)
                logger.info("%s %s created target %s (id %s)", source, name, target.name, target.pk)
                return target, True
        except IntegrityError:
            logger.info("%s %s: a concurrent writer created the target; looking it up again", source, name)
    raise RuntimeError(f"could not create or find a target for {name!r} after {_MAX_ATTEMPTS} attempts")


def target_groups(names: Sequence[str] | None = None) -> list[Group]:
    """The groups given access to Targets created from streams (``names``, else ``TOM_MMA['TARGET_GROUPS']``)."""
    names = mma_settings.TARGET_GROUPS if names is None else names
    return [Group.objects.get_or_create(name=group_name)[0] for group_name in names]


def assign_target_permissions(target: Target, groups: Sequence[str] | None = None) -> None:
    """Give the stream's groups access to a Target created from a stream.

    The groups in ``TOM_MMA['TARGET_GROUPS']`` (created if missing) may view and change it. The Target's
    own ``permissions`` level stays the TOM's ``TARGET_DEFAULT_PERMISSION``. ``groups`` names other groups
    instead (a stream's own setting, e.g. ``TOM_MMA['OPTICAL_TARGET_GROUPS']``).
    """
    from django.contrib.auth.models import Permission
    from django.contrib.contenttypes.models import ContentType
    from guardian.utils import get_group_obj_perms_model

    model = get_group_obj_perms_model(target)
    group_list = target_groups(groups)
    if not any(f.name == "object_pk" for f in model._meta.get_fields()):
        # a direct-foreign-key permission model: guardian's own path
        app_label = get_target_model_app_label()
        for group in group_list:
            for permission in TARGET_GROUP_PERMISSIONS:
                assign_perm(f"{app_label}.{permission}", group, target)
        return
    # guardian's generic rows in one insert (assign_perm makes two queries per group and permission: a
    # stream that creates many Targets spent a quarter of its time there)
    content_type = ContentType.objects.get_for_model(target)
    permissions = list(Permission.objects.filter(content_type=content_type, codename__in=TARGET_GROUP_PERMISSIONS))
    model.objects.bulk_create(
        [
            model(group=group, permission=permission, content_type=content_type, object_pk=str(target.pk))
            for group in group_list
            for permission in permissions
        ],
        ignore_conflicts=True,
    )


def give_creator_access(target: Target, user: Any) -> None:
    """Let the person who created a Target from a query page view and change it.

    For a Target that a query made (tomtoolkit's Data Services, :mod:`tom_mma.dataservices`), besides the
    groups :func:`get_or_create_target` gave it. Call it only for a Target the query created: merging into an
    existing Target grants nothing (it may be another group's private Target).
    """
    if user is None or not getattr(user, "is_authenticated", False):
        return
    app_label = get_target_model_app_label()
    for permission in TARGET_GROUP_PERMISSIONS:
        assign_perm(f"{app_label}.{permission}", user, target)


def assign_observation_permissions(record: Any) -> None:
    """Give the stream's groups access to an ObservationRecord made for a stream's Target.

    Needed only when ``TARGET_PERMISSIONS_ONLY`` is False; otherwise a record is visible with its Target.
    """
    if getattr(settings, "TARGET_PERMISSIONS_ONLY", True):
        return
    for group in target_groups():
        for permission in ("view_observationrecord", "change_observationrecord"):
            assign_perm(f"tom_observations.{permission}", group, record)
