"""Score the broker's candidates again after a new classifier artifact is installed.

Every classification row keeps its ``model_version``, so a candidate's scores form a history per model
version (:func:`score_history`); rescoring adds the new model's row and leaves the older ones alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from django.db.models import Exists, OuterRef, QuerySet

from .classifier import load_model
from .conf import broker_settings
from .models import Candidate, CandidatePoint, Classification

__all__ = ["rescore", "score_history", "stale_candidates"]


def stale_candidates(model_version: str | None = None) -> QuerySet:
    """Candidates with at least one point and no classification by ``model_version``.

    Default: the model installed now, ``TOM_MMA_BROKER['CLASSIFIER_ARTIFACT']``.
    """
    version = model_version or load_model(broker_settings.CLASSIFIER_ARTIFACT).version
    has_points = CandidatePoint.objects.filter(candidate=OuterRef("pk"))
    scored = Classification.objects.filter(candidate=OuterRef("pk"), model_version=version)
    return Candidate.objects.filter(Exists(has_points)).exclude(Exists(scored)).order_by("pk")


def rescore(candidate_pks: Iterable[int], progress: Callable[[int, int], None] | None = None) -> dict[str, int]:
    """Classify each candidate with the installed model (idempotent: once per model and set of points).

    In batches of :data:`~tom_mma_broker.classification.BATCH_SIZE` (:func:`score_candidates`).

    Parameters
    ----------
    candidate_pks
        The candidates to score.
    progress
        Called as ``progress(done, total)`` after each batch.

    Returns
    -------
    dict
        ``{"candidates": n, "classified": new rows, "skipped": no detection or already scored}``.
    """
    from .classification import BATCH_SIZE, score_candidates

    pks = list(candidate_pks)
    classified = 0
    for start in range(0, len(pks), BATCH_SIZE):
        chunk = pks[start : start + BATCH_SIZE]
        classified += len(score_candidates(chunk))
        if progress is not None:
            progress(start + len(chunk), len(pks))
    return {"candidates": len(pks), "classified": classified, "skipped": len(pks) - classified}


def score_history(candidate: Candidate) -> dict[str, list[tuple[float, float, int]]]:
    """``{model_version: [(latest point MJD, score, points), ...]}`` of a candidate, oldest first."""
    history: dict[str, list[tuple[float, float, int]]] = {}
    rows = candidate.classifications.order_by("created", "pk").values_list(
        "model_version", "latest_point_mjd", "score", "n_points"
    )
    for version, mjd, score, n in rows:
        history.setdefault(version, []).append((mjd, score, n))
    return history
