"""Celery tasks of tom_mma_broker (``@shared_task``: the Celery app lives in the TOM project).

Tasks take primary keys, are idempotent, acknowledge late (a worker killed mid-task leaves the
task to another), and retry only on named, transient errors with backoff.
"""

from __future__ import annotations

import logging

from celery import shared_task
from django.db import InterfaceError, OperationalError

from . import quarantine

logger = logging.getLogger(__name__)

__all__ = ["rehandle_quarantined", "classify_candidate", "classify_candidates", "publish_outbox", "sweep"]

#: acknowledged late, retried with backoff while the database is unreachable (a restart, a lost connection)
_RETRY_ON_DB_ERRORS = {"acks_late": True, "autoretry_for": (OperationalError, InterfaceError), "retry_backoff": True,
                       "max_retries": 10}  # fmt: skip


@shared_task(**_RETRY_ON_DB_ERRORS, retry_backoff_max=300)
def rehandle_quarantined(alert_pk: int) -> str:
    """Handle a quarantined message again (see :func:`tom_mma_broker.quarantine.rehandle`)."""
    return quarantine.rehandle(alert_pk)


@shared_task(**_RETRY_ON_DB_ERRORS, retry_backoff_max=60)
def classify_candidate(candidate_pk: int) -> float | None:
    """Classify a candidate's light curve as it stands (idempotent: once per model and set of points)."""
    from .classification import score_candidate

    result = score_candidate(candidate_pk)
    return None if result is None else result.score


@shared_task(**_RETRY_ON_DB_ERRORS, retry_backoff_max=60)
def classify_candidates(candidate_pks: list[int]) -> int:
    """Classify several candidates at once (one model call, one query for their points, one insert).

    Idempotent as :func:`classify_candidate`; returns the number of new classifications.
    """
    from .classification import score_candidates

    return len(score_candidates(candidate_pks))


@shared_task(bind=True, acks_late=True, max_retries=None)
def publish_outbox(self) -> int:
    """Send queued derived alerts; while the broker does not take them, retry with backoff (forever)."""
    from confluent_kafka import KafkaException

    from .embedded import EmbeddedBrokerError
    from .publishing import PublishIncomplete, publish_pending

    try:
        return publish_pending()
    except (PublishIncomplete, KafkaException, EmbeddedBrokerError, OperationalError) as exc:
        if self.request.is_eager:
            # no worker to retry later: the messages stay queued for the next publish (or the sweep)
            logger.warning("derived alerts not published yet: %s", exc)
            return 0
        delay = min(300, 2 ** min(self.request.retries, 8))
        raise self.retry(exc=exc, countdown=delay)


@shared_task(acks_late=True)
def sweep() -> dict[str, int]:
    """Re-enqueue what a lost enqueue left behind: unclassified candidates, unpublished alerts."""
    from .classification import unclassified_candidates
    from .outbox import pending_count

    pks = list(unclassified_candidates().values_list("pk", flat=True)[:1000])
    if len(pks) == 1:
        classify_candidate.delay(pks[0])
    elif pks:
        classify_candidates.delay(pks)
    pending = pending_count()
    if pending:
        publish_outbox.delay()
    return {"classify": len(pks), "publish": pending}
