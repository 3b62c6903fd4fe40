"""Celery tasks of tom_mma (``@shared_task``; found by the TOM's Celery app through autodiscovery)."""

from __future__ import annotations

from celery import shared_task
from django.core.management import call_command

from tom_mma.gw.tasks import cancel_observations_task, rank_event_task, rank_targets_task

__all__ = ["cancel_observations_task", "rank_event_task", "rank_targets_task", "update_observation_statuses"]


@shared_task(acks_late=True, ignore_result=True)
def update_observation_statuses() -> None:
    """Refresh the status of every open observation request (tomtoolkit's ``updatestatus``).

    The TOM leaves requests' statuses as they were until something asks the facilities; a periodic
    run (the example TOM's beat schedule) lets a request be seen going from pending to completed.
    Idempotent: it only reads the facilities and writes what they say.
    """
    call_command("updatestatus")
