"""Observation requests made for GW events: links, and their cancellation when the event is retracted.

:func:`link_observation` records that a request was made for an event; :func:`cancel_observations` cancels the
pending ones of a retracted event through their facilities; :func:`stale_cancellations` finds those still
pending long after (what the periodic sweep sends again).
"""

from __future__ import annotations

import datetime as dt
import logging

from django.db import transaction
from django.forms import ValidationError as FormValidationError
from django.utils import timezone

from tom_mma import signals
from tom_mma.models import EventObservation, GWEvent

__all__ = ["cancel_observations", "link_observation", "stale_cancellations"]

logger = logging.getLogger(__name__)


def link_observation(event: GWEvent, record) -> EventObservation:
    """Record that an observation request (a ``tom_observations.ObservationRecord``) was made for an event.

    Call it when a request is submitted for a candidate of the event. Idempotent. A request linked to an
    event that is already retracted is queued for cancellation at once.
    """
    with transaction.atomic():
        event = GWEvent.objects.select_for_update().get(pk=event.pk)
        link, created = EventObservation.objects.get_or_create(event=event, observation_record=record)
        if created and not event.is_active:
            link.status = EventObservation.Status.CANCEL_PENDING
            link.reason = "requested after the event was retracted"
            link.save(update_fields=["status", "reason", "modified"])
            transaction.on_commit(
                lambda: signals.gw_observations_to_cancel.send_robust(sender=GWEvent, event=event),
                robust=True,
            )
    return link


def stale_cancellations(older_than: dt.timedelta) -> list[int]:
    """Events whose observation requests have awaited cancellation for longer than ``older_than``.

    A link stays ``cancel_pending`` when the cancellation task gave up (the facility unreachable through all
    its retries) or was never queued or was lost. The links found are touched (``modified`` = now), so that
    a periodic sweep queues each event again at most once per ``older_than``, however long the facility stays
    down.

    Returns
    -------
    list of int
        Primary keys of the events to cancel again.
    """
    now = timezone.now()
    with transaction.atomic():
        stale = EventObservation.objects.select_for_update(skip_locked=True).filter(
            status=EventObservation.Status.CANCEL_PENDING, modified__lt=now - older_than
        )
        rows = list(stale.values_list("pk", "event_id"))
        EventObservation.objects.filter(pk__in=[pk for pk, _ in rows]).update(modified=now)
    return sorted({event_id for _, event_id in rows})


def cancel_observations(event_id: int) -> dict[str, int]:
    """Cancel, through their facilities, the observation requests of an event that await cancellation.

    Each link pending cancellation becomes ``cancelled`` (the facility cancelled it), ``not_needed`` (the
    request had already finished), or ``flagged`` with the reason (the facility cannot cancel, refused, or
    is not configured in this TOM): a person must act. A network error (``OSError``, which includes
    ``requests`` errors) propagates so that the task is retried; links already handled are not touched
    again.

    Returns
    -------
    dict
        Number of links per resulting status.
    """
    from tom_observations.facility import get_service_class

    outcome: dict[str, int] = {}
    pending = EventObservation.objects.filter(event_id=event_id, status=EventObservation.Status.CANCEL_PENDING)
    for link in pending.select_related("observation_record", "event"):
        record = link.observation_record
        status, reason = _cancel_one(get_service_class, record)
        link.status, link.reason = status, reason
        link.save(update_fields=["status", "reason", "modified"])
        outcome[status] = outcome.get(status, 0) + 1
        log = logger.info if status != EventObservation.Status.FLAGGED else logger.warning
        log(
            "%s: observation %s at %s %s: %s",
            link.event.superevent_id,
            record.observation_id,
            record.facility,
            status,
            reason,
        )
    return outcome


def _cancel_one(get_service_class, record) -> tuple[str, str]:
    try:
        facility = get_service_class(record.facility)()
    except ImportError as exc:
        return EventObservation.Status.FLAGGED, f"facility {record.facility!r} is not configured: {exc}"
    if record.user is not None:
        facility.set_user(record.user)
    try:
        terminal = record.status in facility.get_terminal_observing_states()
    except NotImplementedError:
        terminal = False
    if terminal:
        return EventObservation.Status.NOT_NEEDED, f"already {record.status}"
    try:
        cancelled = facility.cancel_observation(record.observation_id)
    except NotImplementedError:
        return EventObservation.Status.FLAGGED, f"{record.facility} cannot cancel requests: cancel it by hand"
    except FormValidationError as exc:
        return EventObservation.Status.FLAGGED, f"{record.facility} refused: {'; '.join(exc.messages)}"
    if not cancelled:
        return EventObservation.Status.FLAGGED, f"{record.facility} did not cancel it: cancel it by hand"
    return EventObservation.Status.CANCELLED, f"cancelled at {record.facility}"
