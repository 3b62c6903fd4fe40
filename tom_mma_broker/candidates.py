"""Candidates and their photometry on the broker side: merge by name, alias and cone; store each point once."""

from __future__ import annotations

import logging
import uuid

from django.db import IntegrityError, connection, transaction
from django.db.models import Q

from tom_mma.targets import cone_filter

from . import signals
from .conf import broker_settings
from .models import Candidate, CandidatePoint
from .schemas.photometry import PhotometryMessage

__all__ = ["find_candidate", "ingest_point", "ingest_points"]

logger = logging.getLogger(__name__)


def find_candidate(name: str, aliases: tuple[str, ...], ra: float, dec: float) -> Candidate | None:
    """The candidate that is this object: same name, a shared alias, or within the merge cone."""
    names = [name, *aliases]
    by_name = Candidate.objects.filter(name__in=names).first()
    if by_name is not None:
        return by_name
    if connection.features.supports_json_field_contains:  # PostgreSQL: jsonb containment, in the server
        query = Q()
        for n in names:
            query |= Q(aliases__contains=[n])
        by_alias = Candidate.objects.filter(query).first()
        if by_alias is not None:
            return by_alias
    else:  # SQLite has no JSON containment: the candidates near the position, their aliases read here
        for candidate in Candidate.objects.filter(dec__gte=dec - 1, dec__lte=dec + 1).only("aliases", "ra", "dec"):
            if set(candidate.aliases) & set(names):
                return candidate
    radius = broker_settings.CANDIDATE_MERGE_RADIUS_ARCSEC / 3600.0
    nearest = cone_filter(Candidate.objects.all(), ra, dec, radius)
    return nearest[0][0] if nearest else None


def _candidate_for(point: PhotometryMessage, known: Candidate | None = None, also: tuple[str, ...] = ()) -> Candidate:
    """The candidate of ``point`` (``known``, if the caller found it already), made if there is none.

    Its aliases get the point's names and ``also`` (the other names its batch gave the same object).
    """
    candidate = known or find_candidate(point.object_name, tuple(point.aliases), point.ra, point.dec)
    if candidate is None:
        try:
            with transaction.atomic():
                return Candidate.objects.create(
                    name=point.object_name, aliases=sorted(set(point.aliases) | set(also)), ra=point.ra,
                    dec=point.dec, gw_event=point.gw_event or "",
                )  # fmt: skip
        except IntegrityError:  # created concurrently under the same name
            return Candidate.objects.get(name=point.object_name)
    new_aliases = {point.object_name, *point.aliases, *also} - {candidate.name} - set(candidate.aliases)
    if new_aliases or (point.gw_event and not candidate.gw_event):
        candidate.aliases = sorted(set(candidate.aliases) | new_aliases)
        candidate.gw_event = candidate.gw_event or point.gw_event or ""
        candidate.save(update_fields=["aliases", "gw_event", "updated"])
    return candidate


def _point_row(candidate: Candidate, point: PhotometryMessage, message_id: uuid.UUID | None) -> CandidatePoint:
    """The stored form of one photometric point (one definition for the single and the batched path)."""
    return CandidatePoint(
        candidate=candidate, point_id=point.point_id, message_id=message_id, mjd=point.mjd, band=point.band,
        magnitude=point.magnitude, magnitude_error=point.magnitude_error, upper_limit=point.upper_limit,
        system=point.system, telescope=point.telescope or "", instrument=point.instrument or "",
        source=point.source,
    )  # fmt: skip


def ingest_point(point: PhotometryMessage, message_id: uuid.UUID | None = None) -> tuple[Candidate, bool]:
    """Store a photometric point under its candidate (once: keyed on ``point_id``).

    Returns
    -------
    candidate, created : Candidate, bool
        ``created`` is False when the point was already stored (a replay).
    """
    existing = CandidatePoint.objects.filter(point_id=point.point_id).select_related("candidate").first()
    if existing is not None:
        return existing.candidate, False
    candidate = _candidate_for(point)
    _point_row(candidate, point, message_id).save(force_insert=True)
    logger.debug("point %s of %s stored (message %s)", point.point_id, candidate.name, message_id)
    signals.candidate_points_added.send(sender=Candidate, candidate_pk=candidate.pk)
    return candidate, True


def ingest_points(
    points: list[PhotometryMessage],
    message_id: uuid.UUID | None = None,
    message_ids: list[uuid.UUID | None] | None = None,
) -> list[Candidate]:
    """Store many points at once (an optical alert's history, a stream batch): one insert per object.

    The same result as :func:`ingest_point` for each point (each stored once, keyed on ``point_id``; the
    points of an object under one candidate, which gets every name they give it), with one
    ``candidate_points_added`` signal per candidate that got new points. The candidates already known by
    name are found in one query for the whole call; only new names are looked for by alias and cone.

    Parameters
    ----------
    points : list of PhotometryMessage
        The points, in any order.
    message_id : uuid.UUID, optional
        The message they all came in.
    message_ids : list, optional
        Or each point's own message (aligned with ``points``).

    Returns
    -------
    list of Candidate
        The candidates that got new points.
    """
    if not points:
        return []
    ids = message_ids if message_ids is not None else [message_id] * len(points)
    known = set(
        CandidatePoint.objects.filter(point_id__in=[p.point_id for p in points]).values_list("point_id", flat=True)
    )
    by_object: dict[str, list[tuple[PhotometryMessage, uuid.UUID | None]]] = {}
    for point, mid in zip(points, ids, strict=True):
        if point.point_id not in known:
            known.add(point.point_id)  # a point twice in the same call is stored once
            by_object.setdefault(point.object_name, []).append((point, mid))
    by_name = {c.name: c for c in Candidate.objects.filter(name__in=list(by_object))}
    touched = []
    for name, group in by_object.items():
        first = group[0][0]
        also = tuple(sorted({a for p, _ in group for a in p.aliases} - set(first.aliases)))
        candidate = _candidate_for(first, by_name.get(name), also)
        rows = [_point_row(candidate, p, mid) for p, mid in group]
        # a concurrent writer's copy of a point is skipped by the unique point_id
        CandidatePoint.objects.bulk_create(rows, ignore_conflicts=True)
        logger.debug("%d points of %s stored", len(rows), candidate.name)
        signals.candidate_points_added.send(sender=Candidate, candidate_pk=candidate.pk)
        touched.append(candidate)
    return touched
