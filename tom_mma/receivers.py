"""Signal receivers of ``tom_mma``: where its services' events become Celery tasks.

Services never import tasks: they write the rows that say what must happen and send the documented signals of
:mod:`tom_mma.signals` after their commit; these receivers turn each into a task through
:func:`tom_mma.deferred.send` (in eager mode from a stream's thread, a background thread: the stream never
waits on a facility). Connected by :func:`connect`, which ``TomMmaConfig.ready()`` calls (idempotent).

- a Target saved with a position is ranked against every active GW event;
- a new current sky map ranks every Target against it and evaluates the observation rules again;
- a retracted event, or a request linked to an event already retracted, gets its requests cancelled;
- a claimed observation trigger is submitted to its facility.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models.signals import post_save

from tom_mma import deferred, signals

__all__ = ["connect", "target_saved"]


def target_saved(sender: Any, instance: Any, created: bool = False, update_fields: Any = None, **kwargs: Any) -> None:
    """Queue ranking of a saved Target (with a position) against every active event, after commit.

    Targets inserted in bulk by :func:`tom_mma.targets.get_or_create_targets` are ranked by one task.
    """
    from tom_targets.base_models import BaseTarget

    from tom_mma.gw.tasks import rank_targets_task

    if not isinstance(instance, BaseTarget) or instance.ra is None or instance.dec is None:
        return
    if not created and update_fields is not None and not {"ra", "dec"} & set(update_fields):
        return  # saved without touching its position: its ranks still hold
    pks = [instance.pk]
    together = getattr(instance, "_tom_mma_saved_together", None)  # inserted in bulk (tom_mma.targets)
    if together:
        if together[0] != instance.pk:
            return  # the batch's first Target queues the ranking of all of them
        pks = list(together)
    transaction.on_commit(lambda: deferred.send(rank_targets_task, pks), robust=True)


def skymap_updated(sender: Any, event: Any, **kwargs: Any) -> None:
    """A new current sky map: rank the Targets against it, then evaluate the rules again for its alerts."""
    from tom_mma.gw.tasks import rank_event_task
    from tom_mma.tasks import evaluate_rules_for_event_task

    deferred.send(rank_event_task, event.pk)
    deferred.send(evaluate_rules_for_event_task, event.superevent_id)


def observations_to_cancel(sender: Any, event: Any, **kwargs: Any) -> None:
    """An event retracted, or a request linked to an event already retracted: cancel at the facilities."""
    from tom_mma.gw.tasks import cancel_observations_task

    deferred.send(cancel_observations_task, event.pk)


def trigger_claimed(sender: Any, trigger_id: int, **kwargs: Any) -> None:
    """A rule claimed a trigger: submit its request to the facility."""
    from tom_mma.tasks import submit_trigger_task

    deferred.send(submit_trigger_task, trigger_id)


def connect() -> None:
    """Connect the receivers (call from ``AppConfig.ready()``; calling it again does nothing)."""
    from tom_targets.models import Target  # the TOM's target model (settings.TARGET_MODEL_CLASS)

    post_save.connect(target_saved, sender=Target, dispatch_uid="tom_mma.receivers.target_saved")
    signals.gw_skymap_updated.connect(skymap_updated, dispatch_uid="tom_mma.receivers.skymap_updated")
    signals.gw_event_retracted.connect(observations_to_cancel, dispatch_uid="tom_mma.receivers.event_retracted")
    signals.gw_observations_to_cancel.connect(observations_to_cancel, dispatch_uid="tom_mma.receivers.to_cancel")
    signals.observation_trigger_claimed.connect(trigger_claimed, dispatch_uid="tom_mma.receivers.trigger_claimed")
