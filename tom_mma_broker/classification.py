"""Classify a candidate's light curve and, above the floor, queue a derived alert in the outbox.

Both happen in one transaction, so a classification never exists without its alert queued, and
an alert is never sent for a classification that was rolled back.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Iterable
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Count, Exists, OuterRef, QuerySet, Subquery

from tom_mma.gw.events import is_retracted
from tom_mma.schemas.derived_alert import AlertCandidate, AlertPoint, DerivedAlert, utc_now_iso

from .classifier import NoDetectionsError, Observation, load_model
from .classifier.features import canonical_band
from .classifier_context import alert_floor, gw_context_for, stored_features
from .conf import broker_settings
from .models import Candidate, CandidatePoint, Classification
from .outbox import queue_alert, queue_retractions

__all__ = [
    "BATCH_SIZE",
    "score_candidate",
    "score_candidates",
    "input_digest",
    "derived_alert_for",
    "unclassified_candidates",
]

logger = logging.getLogger(__name__)


def input_digest(model_version: str, point_ids: list[str]) -> str:
    """The idempotency key of a classification: the model and the exact set of points.

    Examples
    --------
    >>> input_digest("kn-v1", ["b", "a"]) == input_digest("kn-v1", ["a", "b"])
    True
    """
    text = model_version + "\n" + "\n".join(sorted(point_ids))
    return hashlib.sha256(text.encode()).hexdigest()


def derived_alert_for(classification: Classification, points: list[CandidatePoint]) -> DerivedAlert:
    """The derived alert (schema v1) that publishes ``classification``."""
    candidate = classification.candidate
    return DerivedAlert(
        alert_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"tom-mma:classification:{classification.input_digest}")),
        kind="classification",
        created=utc_now_iso(),
        candidate=AlertCandidate(name=candidate.name, ra=candidate.ra, dec=candidate.dec,
                                 aliases=tuple(candidate.aliases)),
        latest_point_mjd=classification.latest_point_mjd,
        kilonova_score=classification.score,
        model_version=classification.model_version,
        features=classification.features,
        source_message_ids=tuple(classification.source_message_ids),
        gw_event=candidate.gw_event or None,
        photometry=tuple(
            AlertPoint(mjd=p.mjd, band=p.band, magnitude=p.magnitude, magnitude_error=p.magnitude_error,
                       upper_limit=p.upper_limit, telescope=p.telescope or None, system=p.system)
            for p in points
        ),
    )  # fmt: skip


BATCH_SIZE = 500
"""Candidates scored together by :func:`score_candidates` (one query for their points, one insert)."""


def _observations(points: list[CandidatePoint]) -> list[Observation]:
    return [
        Observation(mjd=p.mjd, band=p.band, magnitude=p.magnitude, magnitude_error=p.magnitude_error,
                    upper_limit=p.upper_limit, system=p.system or None)
        for p in points
    ]  # fmt: skip


def _row(candidate: Candidate, points: list[CandidatePoint], digest: str, result: Any, model: Any) -> Classification:
    return Classification(
        candidate=candidate, model_version=result.model_version, input_digest=digest, score=result.score,
        features=stored_features(result, model), n_points=len(points), latest_point_mjd=points[-1].mjd,
        source_message_ids=sorted({str(p.message_id) for p in points if p.message_id}),
    )  # fmt: skip


def _queue_alerts(classification: Classification, points: list[CandidatePoint], model: Any) -> None:
    """In the classification's transaction: its derived alert above the floor (and the retraction it may need)."""
    candidate = classification.candidate
    if broker_settings.PUBLISH_ENABLED and classification.score >= alert_floor(model, broker_settings.PUBLISH_FLOOR):
        queue_alert(derived_alert_for(classification, points), broker_settings.RESULTS_TOPIC, classification)
        if candidate.gw_event and is_retracted(candidate.gw_event):
            # the score stands, the event it cites does not: the retraction follows the alert
            queue_retractions(candidate.gw_event, f"GW event {candidate.gw_event} was retracted by LVK")


def _log(classification: Classification) -> None:
    logger.info(
        "candidate %s: kilonova score %.3f from %d points (%s)",
        classification.candidate.name,
        classification.score,
        classification.n_points,
        classification.model_version,
    )


def score_candidate(candidate_pk: int) -> Classification | None:
    """Score the candidate's light curve as it stands, once per (model, set of points).

    Returns
    -------
    Classification or None
        The new classification; None when nothing is new (already classified with these points and
        this model), the candidate is gone, or it has no detection yet.
    """
    model = load_model(broker_settings.CLASSIFIER_ARTIFACT)
    candidate = Candidate.objects.filter(pk=candidate_pk).first()
    if candidate is None:
        return None
    points = list(CandidatePoint.objects.filter(candidate=candidate).order_by("mjd", "id"))
    digest = input_digest(model.version, [p.point_id for p in points])
    if not points or Classification.objects.filter(candidate=candidate, input_digest=digest).exists():
        return None
    try:
        result = model.classify(_observations(points), gw_context_for(candidate))
    except NoDetectionsError:
        logger.info("candidate %s has no detection yet: not classified", candidate.name)
        return None
    try:
        with transaction.atomic():
            classification = _row(candidate, points, digest, result, model)
            classification.save()
            _queue_alerts(classification, points, model)
    except IntegrityError:  # the same classification, made concurrently by another worker
        return None
    _log(classification)
    return classification


def score_candidates(candidate_pks: Iterable[int]) -> list[Classification]:
    """Score many candidates' light curves at once: what :func:`score_candidate` does for each, batched.

    Per :data:`BATCH_SIZE` candidates: one query for the candidates, one for all their points, one for the
    classifications they already have, one call of the classifier (:meth:`KilonovaModel.classify_many`) and
    one insert of the new rows, in one transaction with their derived alerts. A candidate following a GW
    event costs one more look-up of its position in the event's sky map (:func:`gw_context_for`).

    Returns
    -------
    list of Classification
        The new classifications; candidates gone, without a detection yet, or already classified with
        these points and this model give none. Idempotent: the same call again adds nothing.
    """
    model = load_model(broker_settings.CLASSIFIER_ARTIFACT)
    pks = sorted(set(candidate_pks))
    made: list[Classification] = []
    for start in range(0, len(pks), BATCH_SIZE):
        made += _score_chunk(pks[start : start + BATCH_SIZE], model)
    return made


def _score_chunk(pks: list[int], model: Any) -> list[Classification]:
    candidates = Candidate.objects.in_bulk(pks)
    points: dict[int, list[CandidatePoint]] = {}
    for point in CandidatePoint.objects.filter(candidate_id__in=list(candidates)).order_by("candidate_id", "mjd", "id"):
        points.setdefault(point.candidate_id, []).append(point)
    digests = {pk: input_digest(model.version, [p.point_id for p in rows]) for pk, rows in points.items()}
    done = set(
        Classification.objects.filter(
            candidate_id__in=list(digests), input_digest__in=list(digests.values())
        ).values_list("candidate_id", "input_digest")
    )
    todo = [pk for pk in sorted(digests) if (pk, digests[pk]) not in done]
    curves = [(_observations(points[pk]), gw_context_for(candidates[pk])) for pk in todo]
    scored = model.classify_many(curves, skip_undetected=True)
    for pk, result in zip(todo, scored, strict=True):
        if result is None:
            logger.info("candidate %s has no detection yet: not classified", candidates[pk].name)
    ready = [(pk, result) for pk, result in zip(todo, scored, strict=True) if result is not None]
    rows = [_row(candidates[pk], points[pk], digests[pk], result, model) for pk, result in ready]
    try:
        with transaction.atomic():
            Classification.objects.bulk_create(rows)
            for row, (pk, _) in zip(rows, ready, strict=True):
                _queue_alerts(row, points[pk], model)
    except IntegrityError:
        # another worker classified some of them meanwhile: each on its own, as score_candidate does
        return [row for row in (score_candidate(pk) for pk, _ in ready) if row is not None]
    for row in rows:
        _log(row)
    return rows


def unclassified_candidates() -> QuerySet:
    """Candidates the classifier can score whose latest classification does not cover all their points.

    (What the sweep re-enqueues: a classification task lost with its queue, or never enqueued.) A candidate
    counts only with a detection in a band the classifier uses (the classifier's own
    :func:`~tom_mma_broker.classifier.features.canonical_band`): one with detections in other bands alone
    would raise ``NoDetectionsError`` and be re-enqueued by every sweep, for ever.
    """
    n_points = (
        CandidatePoint.objects.filter(candidate=OuterRef("pk")).values("candidate").annotate(c=Count("id")).values("c")
    )
    covered = Classification.objects.filter(candidate=OuterRef("pk"), n_points=OuterRef("n"))
    # the distinct band names of detections are few: map them with the classifier's function, filter in SQL
    seen = CandidatePoint.objects.filter(upper_limit=False).values_list("band", flat=True).distinct()
    bands = sorted({band for band in seen if canonical_band(band) is not None})
    detected = CandidatePoint.objects.filter(candidate=OuterRef("pk"), upper_limit=False, band__in=bands)
    return Candidate.objects.annotate(n=Subquery(n_points)).filter(Exists(detected)).exclude(Exists(covered))
