"""Celery tasks of tom_mma (``@shared_task``; found by the TOM's Celery app through autodiscovery).

Thin over the services, primary keys as arguments, idempotent, acknowledged late. They are sent by the
receivers of :mod:`tom_mma.receivers` after the commit that made them necessary, and by :func:`sweep`, which
the TOM's Celery beat runs periodically::

    "tom-mma-sweep-triggers": {"task": "tom_mma.tasks.sweep", "schedule": 60.0},
"""

from __future__ import annotations

import datetime as dt
import logging

from celery import shared_task
from django.core.management import call_command
from django.db import InterfaceError, OperationalError

from tom_mma import rules, triggers
from tom_mma.gw.ranking import lagging_events
from tom_mma.gw.tasks import cancel_observations_task, rank_event_task, rank_targets_task

__all__ = [
    "cancel_observations_task",
    "evaluate_rules_for_event_task",
    "rank_event_task",
    "rank_targets_task",
    "submit_trigger_task",
    "sweep",
    "update_observation_statuses",
]

logger = logging.getLogger(__name__)

#: a facility that does not answer is tried again after 30 s, 60 s, ... up to 10 min, this many times
TRIGGER_RETRIES = 8
# the sweep sends a pending trigger again after this long (longer than a task's first retries), and fails one
# left 'submitting' longer than any facility call takes
TRIGGER_PENDING_S = 900
TRIGGER_SUBMITTING_S = 1800


@shared_task(bind=True, acks_late=True, max_retries=TRIGGER_RETRIES)
def submit_trigger_task(self, trigger_id: int) -> str:
    """Submit a claimed trigger's request to its facility (:func:`tom_mma.triggers.submit_trigger`).

    Retried with backoff while the facility does not answer (no connection, a timeout, an HTTP 5xx), and on
    a transient database error; after the last retry the trigger is failed with the facility's error.
    """
    try:
        return triggers.submit_trigger(trigger_id).status
    except (triggers.FacilityUnavailable, OperationalError, InterfaceError) as exc:
        if self.request.is_eager:
            # no worker to retry later: the trigger stays pending, and the sweep sends it again
            logger.warning("trigger %s: left pending for the sweep: %s", trigger_id, exc)
            return "pending"
        if self.request.retries >= TRIGGER_RETRIES:
            triggers.give_up_trigger(
                trigger_id, f"the facility did not answer after {TRIGGER_RETRIES + 1} attempts: {exc}"
            )
            return "failed"
        raise self.retry(exc=exc, countdown=min(600, 30 * 2**self.request.retries))


@shared_task(acks_late=True, autoretry_for=(OperationalError, InterfaceError), retry_backoff=True, max_retries=10)
def evaluate_rules_for_event_task(superevent_id: str) -> int:
    """Evaluate the observation rules again after an event's sky map changed (see ``evaluate_rules_for_event``)."""
    return len(rules.evaluate_rules_for_event(superevent_id))


@shared_task(acks_late=True)
def sweep(pending_s: float = TRIGGER_PENDING_S, submitting_s: float = TRIGGER_SUBMITTING_S) -> dict[str, int]:
    """Send again what a lost send left behind.

    Triggers still pending (see :func:`triggers.stale_triggers`), and active events whose current sky map
    was not ranked against, or the rules not evaluated with, yet (:func:`tom_mma.gw.ranking.lagging_events`).
    """
    ids = triggers.stale_triggers(dt.timedelta(seconds=pending_s), dt.timedelta(seconds=submitting_s))
    for trigger_id in ids:
        submit_trigger_task.delay(trigger_id)
    unranked, unevaluated = lagging_events()
    for event_id in unranked:
        rank_event_task.delay(event_id)
    for superevent_id in unevaluated:
        evaluate_rules_for_event_task.delay(superevent_id)
    if ids or unranked or unevaluated:
        logger.warning("sent again: %d trigger(s), %d ranking(s), %d rule evaluation(s)", len(ids), len(unranked),
                       len(unevaluated))  # fmt: skip
    return {"triggers": len(ids), "rankings": len(unranked), "rule_evaluations": len(unevaluated)}


@shared_task(acks_late=True, ignore_result=True)
def update_observation_statuses() -> None:
    """Refresh the status of every open observation request (tomtoolkit's ``updatestatus``).

    The TOM leaves requests' statuses as they were until something asks the facilities; a periodic
    run (the example TOM's beat schedule) lets a request be seen going from pending to completed.
    Idempotent: it only reads the facilities and writes what they say.
    """
    call_command("updatestatus")
