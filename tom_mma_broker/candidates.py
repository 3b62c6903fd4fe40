"""Candidates and their photometry on the broker side: merge by name, alias and cone; store each point once."""

from __future__ import annotations

import logging
import uuid

from django.db import IntegrityError, transaction

from tom_mma.targets import cone_filter

from . import signals
from .conf import broker_settings
from .models import Candidate, CandidatePoint
from .schemas.photometry import PhotometryMessage

__all__ = ["find_candidate", "ingest_point"]

logger = logging.getLogger(__name__)


def find_candidate(name: str, aliases: tuple[str, ...], ra: float, dec: float) -> Candidate | None:
    """The candidate that is this object: same name, a shared alias, or within the merge cone."""
    names = [name, *aliases]
    by_name = Candidate.objects.filter(name__in=names).first()
    if by_name is not None:
        return by_name
    for candidate in Candidate.objects.filter(dec__gte=dec - 1, dec__lte=dec + 1).only("aliases", "ra", "dec"):
        if set(candidate.aliases) & set(names):
            return candidate
    radius = broker_settings.CANDIDATE_MERGE_RADIUS_ARCSEC / 3600.0
    nearest = cone_filter(Candidate.objects.all(), ra, dec, radius)
    return nearest[0][0] if nearest else None


def _candidate_for(point: PhotometryMessage) -> Candidate:
    candidate = find_candidate(point.object_name, tuple(point.aliases), point.ra, point.dec)
    if candidate is None:
        try:
            with transaction.atomic():
                return Candidate.objects.create(
                    name=point.object_name, aliases=sorted(set(point.aliases)), ra=point.ra, dec=point.dec,
                    gw_event=point.gw_event or "",
                )  # fmt: skip
        except IntegrityError:  # created concurrently under the same name
            return Candidate.objects.get(name=point.object_name)
    new_aliases = {point.object_name, *point.aliases} - {candidate.name} - set(candidate.aliases)
    if new_aliases or (point.gw_event and not candidate.gw_event):
        candidate.aliases = sorted(set(candidate.aliases) | new_aliases)
        candidate.gw_event = candidate.gw_event or point.gw_event or ""
        candidate.save(update_fields=["aliases", "gw_event", "updated"])
    return candidate


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
    CandidatePoint.objects.create(
        candidate=candidate, point_id=point.point_id, message_id=message_id, mjd=point.mjd, band=point.band,
        magnitude=point.magnitude, magnitude_error=point.magnitude_error, upper_limit=point.upper_limit,
        system=point.system, telescope=point.telescope or "", instrument=point.instrument or "",
        source=point.source,
    )  # fmt: skip
    logger.debug("point %s of %s stored (message %s)", point.point_id, candidate.name, message_id)
    signals.candidate_points_added.send(sender=Candidate, candidate_pk=candidate.pk)
    return candidate, True
