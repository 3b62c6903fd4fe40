"""Celery tasks of the GW layer: thin wrappers over :mod:`tom_mma.gw.events`, primary keys as arguments.

All are idempotent (they upsert candidates, or touch only links still pending), so ``acks_late`` redelivery
and retries are safe. They are queued on commit by the service layer.
"""

from __future__ import annotations

from celery import shared_task

__all__ = ["cancel_observations_task", "rank_event_task", "rank_targets_task"]


@shared_task(acks_late=True)
def rank_event_task(event_id: int) -> int:
    """Rank every Target against the event's current sky map (:func:`tom_mma.gw.events.rank_event`)."""
    from .events import rank_event

    return rank_event(event_id)


@shared_task(acks_late=True)
def rank_targets_task(target_ids: list[int]) -> int:
    """Rank these Targets against every active event (:func:`tom_mma.gw.events.rank_targets`)."""
    from .events import rank_targets

    return rank_targets(target_ids)


@shared_task(acks_late=True, autoretry_for=(OSError,), retry_backoff=30, retry_backoff_max=600, max_retries=6)
def cancel_observations_task(event_id: int) -> dict[str, int]:
    """Cancel the pending observation requests of a retracted event (:func:`tom_mma.gw.events.cancel_observations`).

    Retried with backoff on network errors (``OSError``, which includes ``requests`` errors).
    """
    from .events import cancel_observations

    return cancel_observations(event_id)
