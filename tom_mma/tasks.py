"""Celery tasks of tom_mma (``@shared_task``; found by the TOM's Celery app through autodiscovery)."""

from tom_mma.gw.tasks import cancel_observations_task, rank_event_task, rank_targets_task

__all__ = ["cancel_observations_task", "rank_event_task", "rank_targets_task"]
