"""Celery tasks of the GW layer: thin over :mod:`tom_mma.gw.ranking` and :mod:`tom_mma.gw.observations`.

Primary keys as arguments.

All are idempotent (they upsert candidates, or touch only links still pending), so ``acks_late`` redelivery
and retries are safe. They are sent by :mod:`tom_mma.receivers` after a commit, except :func:`sweep_cancellations`,
which the TOM's Celery beat runs periodically (``CELERY_BEAT_SCHEDULE``)::

    "tom_mma-sweep-cancellations": {"task": "tom_mma.gw.tasks.sweep_cancellations", "schedule": 600.0},
"""

from __future__ import annotations

import datetime as dt
import logging

from celery import shared_task

__all__ = ["cancel_observations_task", "rank_event_task", "rank_targets_task", "sweep_cancellations"]

logger = logging.getLogger(__name__)

# Longer than the whole retry span of cancel_observations_task (at most 30 + 60 + ... + 600 s ~ 26 min), so
# that the sweep does not queue an event whose own task is still retrying.
SWEEP_CANCELLATIONS_AFTER_S = 1800


@shared_task(acks_late=True)
def rank_event_task(event_id: int) -> int:
    """Rank every Target against the event's current sky map (:func:`tom_mma.gw.ranking.rank_event`)."""
    from .ranking import rank_event

    return rank_event(event_id)


@shared_task(acks_late=True)
def rank_targets_task(target_ids: list[int]) -> int:
    """Rank these Targets against every active event (:func:`tom_mma.gw.ranking.rank_targets`)."""
    from .ranking import rank_targets

    return rank_targets(target_ids)


@shared_task(acks_late=True, autoretry_for=(OSError,), retry_backoff=30, retry_backoff_max=600, max_retries=6)
def cancel_observations_task(event_id: int) -> dict[str, int]:
    """Cancel the pending observation requests of a retracted event (``observations.cancel_observations``).

    Retried with backoff on network errors (``OSError``, which includes ``requests`` errors).
    """
    from .observations import cancel_observations

    return cancel_observations(event_id)


@shared_task(acks_late=True)
def sweep_cancellations(older_than_s: float = SWEEP_CANCELLATIONS_AFTER_S) -> list[int]:
    """Queue the cancellation again for events whose requests have awaited it for more than ``older_than_s``.

    Picks up what :func:`cancel_observations_task` left: a facility still unreachable after all its retries,
    a task lost with its queue, an enqueue that failed. Each event is queued again at most once per
    ``older_than_s`` (see :func:`tom_mma.gw.observations.stale_cancellations`).

    Returns
    -------
    list of int
        The events queued.
    """
    from .observations import stale_cancellations

    event_ids = stale_cancellations(dt.timedelta(seconds=older_than_s))
    for event_id in event_ids:
        cancel_observations_task.delay(event_id)
    if event_ids:
        logger.warning("%d event(s) with observation requests still to cancel: queued again", len(event_ids))
    return event_ids
