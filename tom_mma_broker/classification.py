"""Classify a candidate's light curve and, above the floor, queue a derived alert in the outbox.

Both happen in one transaction, so a classification never exists without its alert queued, and
an alert is never sent for a classification that was rolled back.
"""

from __future__ import annotations

import hashlib
import logging
import uuid

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

__all__ = ["score_candidate", "input_digest", "derived_alert_for", "unclassified_candidates"]

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
    observations = [
        Observation(mjd=p.mjd, band=p.band, magnitude=p.magnitude, magnitude_error=p.magnitude_error,
                    upper_limit=p.upper_limit, system=p.system or None)
        for p in points
    ]  # fmt: skip
    try:
        result = model.classify(observations, gw_context_for(candidate))
    except NoDetectionsError:
        logger.info("candidate %s has no detection yet: not classified", candidate.name)
        return None
    try:
        with transaction.atomic():
            classification = Classification.objects.create(
                candidate=candidate, model_version=result.model_version, input_digest=digest, score=result.score,
                features=stored_features(result, model), n_points=len(points), latest_point_mjd=points[-1].mjd,
                source_message_ids=sorted({str(p.message_id) for p in points if p.message_id}),
            )  # fmt: skip
            if broker_settings.PUBLISH_ENABLED and result.score >= alert_floor(model, broker_settings.PUBLISH_FLOOR):
                queue_alert(derived_alert_for(classification, points), broker_settings.RESULTS_TOPIC, classification)
                if candidate.gw_event and is_retracted(candidate.gw_event):
                    # the score stands, the event it cites does not: the retraction follows the alert
                    queue_retractions(candidate.gw_event, f"GW event {candidate.gw_event} was retracted by LVK")
    except IntegrityError:  # the same classification, made concurrently by another worker
        return None
    logger.info(
        "candidate %s: kilonova score %.3f from %d points (%s)",
        candidate.name,
        result.score,
        len(points),
        result.model_version,
    )
    return classification


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
