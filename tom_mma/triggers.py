"""Observation triggers: sending a rule's request to its facility, retrying, and the sweep's view of them.

A trigger is claimed (a ``pending`` :class:`~tom_mma.models.ObservationTrigger`) by :func:`tom_mma.rules.evaluate_rules`
inside the ingest transaction; a task (:func:`tom_mma.tasks.submit_trigger_task`) then calls
:func:`submit_trigger`, never the stream's thread. A facility that is unreachable, times out or answers with a
server error leaves the trigger ``pending`` with the error (the task retries with backoff, then
:func:`give_up_trigger`); one that refuses the request fails it with the facility's reason.
:func:`stale_triggers` is what the periodic sweep sends again.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone
from tom_observations.models import ObservationRecord

from tom_mma import signals
from tom_mma.gw.observations import link_observation
from tom_mma.models import GWEvent, ObservationTrigger

from .rules import get_rule, is_transient_facility_error

__all__ = [
    "FacilityUnavailable",
    "requeue_failed",
    "give_up_trigger",
    "retry_trigger",
    "stale_triggers",
    "submit_trigger",
]

logger = logging.getLogger(__name__)


class FacilityUnavailable(Exception):
    """The facility could not be reached, timed out or failed on its side: trying again later may succeed."""


def _link_to_event(superevent_id: str, observation: ObservationRecord) -> None:
    """Link a request to the GW event its alert named (so that a retraction cancels it)."""
    event = GWEvent.objects.filter(superevent_id=superevent_id).first()
    if event is None:
        logger.info(
            "observation %s: GW event %s unknown to this TOM; not linked", observation.observation_id, superevent_id
        )
        return
    link_observation(event, observation)


def submit_trigger(trigger_id: int) -> ObservationTrigger:
    """Send the request of a pending trigger to its facility and record the outcome.

    Idempotent: only a ``pending`` trigger is submitted (it is moved to ``submitting`` first by a
    conditional update, so two workers cannot both submit it). The outcome is ``submitted`` with the
    ``ObservationRecord`` rows; ``failed`` with the facility's reason when it refused the request (its form or
    validation, an HTTP 4xx, a missing facility); or, when the facility could not answer (no connection, a
    timeout, an HTTP 5xx), ``pending`` again with the error and one more attempt counted, and
    :class:`FacilityUnavailable` raised so that the task retries it with backoff.

    Raises
    ------
    FacilityUnavailable
        The facility could not answer this time.
    """
    taken = ObservationTrigger.objects.filter(pk=trigger_id, status=ObservationTrigger.Status.PENDING).update(
        status=ObservationTrigger.Status.SUBMITTING, attempts=F("attempts") + 1, modified=timezone.now()
    )
    trigger = ObservationTrigger.objects.select_related("target", "alert").get(pk=trigger_id)
    if not taken:
        return trigger
    try:
        rule = get_rule(trigger.rule)
        records = rule.request_observation(trigger)
    except Exception as exc:
        # Any facility can fail in its own way (HTTP errors, ImproperlyConfigured, a missing facility...). The
        # ingest is committed and correct: the failure is recorded on the trigger (the admin shows it and can
        # submit it again) and logged; a transient one is retried.
        error = f"{type(exc).__name__}: {exc}"[:10000]
        if is_transient_facility_error(exc):
            ObservationTrigger.objects.filter(pk=trigger_id).update(
                status=ObservationTrigger.Status.PENDING, error=f"attempt {trigger.attempts}: {error}",
                modified=timezone.now(),
            )  # fmt: skip
            logger.warning("trigger %s: %s did not answer (attempt %d): %s", trigger_id, trigger.facility,
                           trigger.attempts, error)  # fmt: skip
            raise FacilityUnavailable(error) from exc
        ObservationTrigger.objects.filter(pk=trigger_id).update(status=ObservationTrigger.Status.FAILED, error=error)
        logger.exception("trigger %s (rule %s, target %s): request failed", trigger_id, trigger.rule, trigger.target_id)
        trigger.refresh_from_db()
        return trigger
    trigger.observation_records.add(*records)
    ObservationTrigger.objects.filter(pk=trigger_id).update(status=ObservationTrigger.Status.SUBMITTED, error="")
    trigger.refresh_from_db()
    logger.info(
        "trigger %s (rule %s, target %s): submitted to %s as %s",
        trigger_id,
        trigger.rule,
        trigger.target_id,
        trigger.facility,
        [r.observation_id for r in records],
    )
    gw_event = trigger.alert.gw_event if trigger.alert else ""
    if gw_event:
        for observation in records:
            _link_to_event(gw_event, observation)
    return trigger


def give_up_trigger(trigger_id: int, reason: str) -> None:
    """Fail a trigger that is still ``pending`` after its retries (the facility never answered)."""
    ObservationTrigger.objects.filter(pk=trigger_id, status=ObservationTrigger.Status.PENDING).update(
        status=ObservationTrigger.Status.FAILED, error=reason[:10000]
    )


def stale_triggers(pending_for: dt.timedelta, submitting_for: dt.timedelta) -> list[int]:
    """Triggers the sweep must see to: pending too long (their task was lost), or stuck while submitting.

    A trigger ``submitting`` for longer than ``submitting_for`` lost its worker mid-request: whether the
    facility took the request is unknown, so it is failed with that reason for a person to check (never
    submitted twice). Pending ones are touched (``modified`` = now), so that each is sent again at most once
    per ``pending_for``.

    Returns
    -------
    list of int
        The pending triggers to send again.
    """
    now = timezone.now()
    ObservationTrigger.objects.filter(
        status=ObservationTrigger.Status.SUBMITTING, modified__lt=now - submitting_for
    ).update(
        status=ObservationTrigger.Status.FAILED,
        error="interrupted while submitting (a lost worker?): check the facility before retrying",
        modified=now,
    )
    with transaction.atomic():
        stale = ObservationTrigger.objects.select_for_update(skip_locked=True).filter(
            status=ObservationTrigger.Status.PENDING, modified__lt=now - pending_for
        )
        ids = list(stale.values_list("pk", flat=True))
        ObservationTrigger.objects.filter(pk__in=ids).update(modified=now)
    return ids


def requeue_failed(trigger_ids: Any) -> int:
    """Make failed triggers pending again and have a task submit each (an operator's retry, from the admin).

    The facility is not called in the caller's thread (a web request): the triggers are sent as new ones are.

    Returns
    -------
    int
        How many failed triggers were requeued.
    """
    with transaction.atomic():
        ids = list(
            ObservationTrigger.objects.filter(pk__in=list(trigger_ids), status=ObservationTrigger.Status.FAILED)
            .select_for_update()
            .values_list("pk", flat=True)
        )
        ObservationTrigger.objects.filter(pk__in=ids).update(status=ObservationTrigger.Status.PENDING,
                                                             modified=timezone.now())  # fmt: skip
        for trigger_id in ids:
            transaction.on_commit(
                lambda trigger_id=trigger_id: signals.observation_trigger_claimed.send_robust(
                    sender=ObservationTrigger, trigger_id=trigger_id
                ),
                robust=True,
            )
    return len(ids)


def retry_trigger(trigger_id: int) -> ObservationTrigger:
    """Submit a ``failed`` trigger again (an operator's decision, e.g. after fixing the facility)."""
    ObservationTrigger.objects.filter(pk=trigger_id, status=ObservationTrigger.Status.FAILED).update(
        status=ObservationTrigger.Status.PENDING
    )
    return submit_trigger(trigger_id)
