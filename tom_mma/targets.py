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
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import IntegrityError, connection, transaction
from guardian.shortcuts import assign_perm
from tom_targets.base_models import get_target_model_app_label
from tom_targets.models import Target, TargetName

from tom_mma.cones import angular_separation_deg, cone_box, cone_filter, cone_prefilter
from tom_mma.conf import mma_settings

__all__ = [
    "angular_separation_deg",
    "cone_filter",
    "cone_prefilter",
    "cone_box",
    "get_or_create_target",
    "get_or_create_targets",
    "TargetCandidate",
    "assign_target_permissions",
    "assign_targets_permissions",
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


def _unique_names(name: str, aliases: Iterable[str]) -> list[str]:
    names = []
    for candidate in (name, *aliases):
        candidate = (candidate or "").strip()
        if candidate and candidate not in names:
            names.append(candidate)
    return names


def _creation_lock() -> None:
    # SQLite serialises writers already (the TOM opens transactions IMMEDIATE); PostgreSQL needs a lock,
    # because nothing exists yet that select_for_update could hold.
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_CREATE_LOCK_KEY])


@dataclass(frozen=True)
class TargetCandidate:
    """One alert's candidate for :func:`get_or_create_targets`: its name at the source, position, other names.

    ``source`` says what the alert came from, for the log.
    """

    name: str
    ra: float
    dec: float
    aliases: tuple[str, ...] = ()
    source: str = "alert"


def _same(a: Target, b: Target) -> bool:
    return a is b or (a.pk is not None and a.pk == b.pk)


class _Index:
    """The Targets a batch of candidates may merge into, by name, alias and position, read in three queries.

    Targets the batch creates, and aliases it adds, join the index as they are planned, so that a later
    candidate of the same batch finds them as it would find them in the database.
    """

    def __init__(self, radius_deg: float) -> None:
        self.radius_deg = radius_deg
        self.by_name: dict[str, Target] = {}
        self.by_alias: dict[str, Target] = {}
        # declination cells of one radius: a Target within the radius of a point is in its cell or a neighbour
        self.cells: dict[int, list[Target]] = {}
        self._seen: dict[int, Target] = {}

    def _one(self, target: Target) -> Target:
        """One Python object per database row (a row met by name and by cone is one Target)."""
        return self._seen.setdefault(target.pk, target)

    def _cell(self, dec: float) -> int:
        return math.floor(dec / self.radius_deg)

    def place(self, target: Target) -> None:
        if self.radius_deg > 0 and target.ra is not None and target.dec is not None:
            self.cells.setdefault(self._cell(target.dec), []).append(target)

    @classmethod
    def load(cls, candidates: Sequence[TargetCandidate], names: Sequence[list[str]], radius_deg: float) -> _Index:
        index = cls(radius_deg)
        every = sorted({n for ns in names for n in ns})
        for chunk in _chunks(every, 500):
            for target in Target.objects.filter(name__in=chunk):
                index.by_name[target.name] = index._one(target)
        aliases: dict[str, int] = {}
        for chunk in _chunks(every, 500):
            aliases.update(TargetName.objects.filter(name__in=chunk).values_list("name", "target_id"))
        missing = {pk for pk in aliases.values() if pk not in index._seen}
        for chunk in _chunks(sorted(missing), 500):
            for target in Target.objects.filter(pk__in=chunk):
                index._one(target)
        index.by_alias = {name: index._seen[pk] for name, pk in aliases.items() if pk in index._seen}
        if radius_deg > 0:
            # one query for the cones of the candidates no name or alias places
            unplaced = [c for c, ns in zip(candidates, names, strict=True)
                        if not any(n in index.by_name or n in index.by_alias for n in ns)]  # fmt: skip
            pks = _in_dec_bands([(c.dec - radius_deg, c.dec + radius_deg) for c in unplaced])
            for chunk in _chunks(sorted(pks - set(index._seen)), 500):
                for target in Target.objects.filter(pk__in=chunk):
                    index._one(target)
            for pk in pks:
                index.place(index._seen[pk])
        return index

    def match(self, names: Sequence[str], ra: float, dec: float) -> tuple[Target | None, str]:
        """The Target these names and position denote, and how it matched (name, alias, cone)."""
        for candidate in names:  # the primary name first
            if candidate in self.by_name:
                return self.by_name[candidate], "name"
        for candidate in names:
            if candidate in self.by_alias:
                return self.by_alias[candidate], "alias"
        if self.radius_deg > 0:
            cell = self._cell(dec)
            best, best_sep = None, None
            for c in (cell - 1, cell, cell + 1):
                for target in self.cells.get(c, ()):
                    if abs(target.dec - dec) > self.radius_deg:
                        continue
                    separation = angular_separation_deg(ra, dec, target.ra, target.dec)
                    if separation <= self.radius_deg and (best_sep is None or separation < best_sep):
                        best, best_sep = target, separation
            if best is not None:
                return best, "cone"
        return None, ""

    def add_aliases(self, target: Target, names: Sequence[str]) -> tuple[list[str], list[str]]:
        """Plan each name no Target uses yet as an alias of ``target``: (names added, names of other Targets)."""
        added, conflicting = [], []
        for name in names:
            owner = self.by_name.get(name) or self.by_alias.get(name)
            if owner is None:
                self.by_alias[name] = target
                added.append(name)
            elif not _same(owner, target):
                conflicting.append(name)
        return added, conflicting


def _in_dec_bands(bands: list[tuple[float, float]]) -> set[int]:
    """Primary keys of the Targets with a position whose declination is in one of ``bands`` (lo, hi).

    The bands are merged where they overlap and sent as one hand-written ``OR`` of ``BETWEEN``s per few
    hundred (each uses the declination index; compiling hundreds of ORM cone boxes cost more than the
    query). The exact separation is then computed in Python (:meth:`_Index.match`).
    """
    merged: list[list[float]] = []
    for lo, hi in sorted(bands):
        if merged and lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    field = Target._meta.get_field("dec")
    meta = field.model._meta
    quote = connection.ops.quote_name
    table, pk, dec, ra = (
        quote(meta.db_table),
        quote(meta.pk.column),
        quote(field.column),
        quote(meta.get_field("ra").column),
    )
    found: set[int] = set()
    with connection.cursor() as cursor:
        for chunk in _chunks(merged, 400):
            where = " OR ".join([f"{dec} BETWEEN %s AND %s"] * len(chunk))
            cursor.execute(
                f"SELECT {pk} FROM {table} WHERE {ra} IS NOT NULL AND ({where})", [v for band in chunk for v in band]
            )
            found.update(row[0] for row in cursor.fetchall())
    return found


def _chunks(items: Sequence, size: int) -> Iterable[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


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
    candidate = TargetCandidate(name, ra, dec, tuple(aliases), source)
    ((target, created),) = get_or_create_targets([candidate], radius_arcsec=radius_arcsec, groups=groups)
    return target, created


def get_or_create_targets(
    candidates: Sequence[TargetCandidate],
    radius_arcsec: float | None = None,
    groups: Sequence[str] | None = None,
) -> list[tuple[Target, bool]]:
    """The Targets of many candidates at once, as :func:`get_or_create_target` would give them one by one.

    The candidates are taken in order: a later one merges into a Target an earlier one of the batch
    created or named (by name, alias or cone), as it would had they come one after the other. The
    look-up is three queries for the whole batch (names, aliases, the cones' declination bands), the new
    Targets, their aliases and their groups' permissions one insert each.

    Parameters
    ----------
    candidates : sequence of TargetCandidate
        The alerts' candidates.
    radius_arcsec : float, optional
        The merge cone (default ``TOM_MMA['MERGE_RADIUS_ARCSEC']``; 0 merges by name and alias only).
    groups : sequence of str, optional
        The groups new Targets are given to (default ``TOM_MMA['TARGET_GROUPS']``).

    Returns
    -------
    list of (Target, bool)
        One per candidate: its Target, and whether this candidate created it.

    Raises
    ------
    ValueError
        If a candidate has no name.

    Notes
    -----
    New Targets get what ``Target.save()`` gives them (the defaults of ``EXTRA_FIELDS``, the
    ``target_post_save`` hook, Django's ``post_save`` signal, each once per Target), inserted in
    bulk when there are several; ``tom_mma``'s own ``post_save`` receiver then queues the GW ranking
    of a batch's new Targets as one task. Safe under concurrency as :func:`get_or_create_target`.
    """
    candidates = list(candidates)
    names = [_unique_names(c.name, c.aliases) for c in candidates]
    if any(not ns for ns in names):
        raise ValueError("a target needs a name")
    if not candidates:
        return []
    radius = mma_settings.MERGE_RADIUS_ARCSEC if radius_arcsec is None else radius_arcsec
    radius_deg = max(float(radius), 0.0) / 3600.0
    for _attempt in range(_MAX_ATTEMPTS):
        try:
            with transaction.atomic():
                index = _Index.load(candidates, names, radius_deg)
                if any(index.match(ns, c.ra, c.dec)[0] is None for c, ns in zip(candidates, names, strict=True)):
                    # something to create: serialise with other writers, and look again (a worker may
                    # have created one of them while we waited)
                    _creation_lock()
                    index = _Index.load(candidates, names, radius_deg)
                return _resolve(index, candidates, names, groups)
        except IntegrityError:
            logger.info(
                "%d candidate(s) (%s ...): a concurrent writer created a target; looking them up again",
                len(candidates),
                candidates[0].name,
            )
    raise RuntimeError(
        f"could not create or find the targets of {candidates[0].name!r} and {len(candidates) - 1} other(s) "
        f"after {_MAX_ATTEMPTS} attempts"
    )


def _resolve(
    index: _Index, candidates: Sequence[TargetCandidate], names: Sequence[list[str]], groups: Sequence[str] | None
) -> list[tuple[Target, bool]]:
    """Match or plan each candidate in order, then write what is new: Targets, aliases, permissions."""
    out: list[tuple[Target, bool]] = []
    new: list[Target] = []
    aliases: list[tuple[Target, str]] = []
    for candidate, ns in zip(candidates, names, strict=True):
        target, how = index.match(ns, candidate.ra, candidate.dec)
        if target is not None:
            added, conflicting = index.add_aliases(target, ns)
            aliases += [(target, n) for n in added]
            logger.info("%s %s merged into target %s by %s (new aliases: %s)",
                        candidate.source, candidate.name, target.name, how, added)  # fmt: skip
            if conflicting:
                logger.warning("Target %s matched, but the names %s belong to other targets; not merged",
                               target.name, conflicting)  # fmt: skip
            out.append((target, False))
            continue
        target = Target(name=ns[0], type=Target.SIDEREAL, ra=candidate.ra % 360.0, dec=candidate.dec, epoch=2000.0)
        index.by_name[target.name] = target
        index.place(target)
        added, _ = index.add_aliases(target, ns[1:])
        aliases += [(target, n) for n in added]
        new.append(target)
        out.append((target, True))
    _create_targets(new)
    if aliases:
        # a name another worker took meanwhile belongs to whichever Target got it first
        TargetName.objects.bulk_create(
            [TargetName(target=target, name=name) for target, name in aliases], batch_size=500, ignore_conflicts=True
        )
    if new:
        assign_targets_permissions(new, groups)
        _after_creation(new)
    for (target, created), candidate in zip(out, candidates, strict=True):
        if created:
            logger.info("%s %s created target %s (id %s)", candidate.source, candidate.name, target.name, target.pk)
    return out


def _create_targets(new: list[Target]) -> None:
    """Insert the new Targets: one through ``Target.save()``, several in one insert (pks returned)."""
    if len(new) == 1:
        new[0].save()  # tomtoolkit's own path: its EXTRA_FIELDS defaults, hook and signal
        return
    if new:
        with transaction.atomic():
            Target.objects.bulk_create(new, batch_size=500)
        if any(t.pk is None for t in new):  # a backend without RETURNING
            ids = dict(Target.objects.filter(name__in=[t.name for t in new]).values_list("name", "pk"))
            for target in new:
                target.pk = ids[target.name]


def _after_creation(new: list[Target]) -> None:
    """What ``Target.save()`` does after its insert, for Targets inserted in bulk (nothing for a single one)."""
    from django.db.models.signals import post_save
    from tom_common.hooks import run_hook
    from tom_targets.models import TargetExtra

    if len(new) < 2:
        return
    defaults = [f for f in getattr(settings, "EXTRA_FIELDS", []) if f.get("default") is not None]
    if defaults:
        TargetExtra.objects.bulk_create(
            [TargetExtra(target=t, key=f["name"], value=f["default"]) for t in new for f in defaults],
            batch_size=500,
            ignore_conflicts=True,
        )
    # tom_mma's own receiver queues one ranking task for the batch (tom_mma.receivers.target_saved)
    batch = tuple(t.pk for t in new)
    using = connection.alias
    for target in new:
        target._tom_mma_saved_together = batch
        post_save.send(sender=type(target), instance=target, created=True, update_fields=None, raw=False, using=using)
        run_hook("target_post_save", target=target, created=True)


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
    assign_targets_permissions([target], groups)


def assign_targets_permissions(targets: Sequence[Target], groups: Sequence[str] | None = None) -> None:
    """:func:`assign_target_permissions` for many Targets at once (one insert of guardian's rows)."""
    from django.contrib.auth.models import Permission
    from django.contrib.contenttypes.models import ContentType
    from guardian.utils import get_group_obj_perms_model

    if not targets:
        return
    model = get_group_obj_perms_model(targets[0])
    group_list = target_groups(groups)
    if not any(f.name == "object_pk" for f in model._meta.get_fields()):
        # a direct-foreign-key permission model: guardian's own path
        app_label = get_target_model_app_label()
        for target in targets:
            for group in group_list:
                for permission in TARGET_GROUP_PERMISSIONS:
                    assign_perm(f"{app_label}.{permission}", group, target)
        return
    # guardian's generic rows in one insert (assign_perm makes two queries per group and permission: a
    # stream that creates many Targets spent a quarter of its time there)
    content_type = ContentType.objects.get_for_model(targets[0])
    permissions = list(Permission.objects.filter(content_type=content_type, codename__in=TARGET_GROUP_PERMISSIONS))
    model.objects.bulk_create(
        [
            model(group=group, permission=permission, content_type=content_type, object_pk=str(target.pk))
            for target in targets
            for group in group_list
            for permission in permissions
        ],
        batch_size=500,
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
