"""Transient events from their notices: created, updated, retracted; one service function per notice.

A notice is stored once (keyed on its content digest: a redelivered or replayed notice changes nothing). Its
figures (time, position, error region, FAR...) become the event's when it is not older than the notice the
event holds (ordered by ``alert_datetime``, then ``record_number``); a retraction retracts the event whatever
the order it comes in. After the transaction commits, :data:`tom_mma.signals.transient_event_changed` is sent
(the linker listens to it).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from django.db import transaction

from ..conf import mma_settings
from ..models import TransientEvent, TransientNotice
from .notices import ParsedNotice

__all__ = ["TransientResult", "ingest_transient_notice"]

logger = logging.getLogger(__name__)

_FIELDS = ("trigger_time", "ra", "dec", "error_radius", "containment", "healpix_url", "superevent_id", "far")


@dataclasses.dataclass(frozen=True)
class TransientResult:
    """What one notice did.

    ``created``, ``updated``, ``retracted``, ``older`` (stored, figures kept), ``duplicate`` or ``ignored``
    (a test notice in a TOM that takes none).
    """

    outcome: str
    event_pk: int | None = None


def _order(alert_time: Any, record_number: int | None) -> tuple:
    return (alert_time is not None, alert_time or 0, record_number if record_number is not None else -1)


def ingest_transient_notice(notice: ParsedNotice) -> TransientResult:
    """Store ``notice`` and create or change its event (one transaction).

    Parameters
    ----------
    notice : ParsedNotice
        A validated notice (:func:`tom_mma.transients.notices.parse_notice`).
    """
    if notice.is_test and not mma_settings.ACCEPT_TEST_EVENTS:
        logger.info("%s %s: test notice ignored (ACCEPT_TEST_EVENTS is off)", notice.source, notice.event_id)
        return TransientResult("ignored")
    with transaction.atomic():
        if TransientNotice.objects.filter(digest=notice.digest).exists():
            return TransientResult("duplicate")
        event = (
            TransientEvent.objects.select_for_update().filter(source=notice.source, event_id=notice.event_id).first()
        )
        created = event is None
        if created:
            event = TransientEvent(source=notice.source, event_id=notice.event_id, messenger=notice.messenger)
        newer = created or _order(notice.alert_time, notice.record_number) >= _order(
            event.latest_notice_at, event.record_number
        )
        outcome = "created" if created else "updated" if newer else "older"
        if newer and not notice.is_retraction:
            for name in _FIELDS:
                value = getattr(notice, name)
                if value not in (None, "") or name in ("ra", "dec", "error_radius", "containment"):
                    if value is None and name in ("ra", "dec", "error_radius", "containment") and not created:
                        continue  # a notice without a position keeps the one the event has
                    setattr(event, name, value)
            if notice.healpix is not None:
                event.healpix = notice.healpix
            event.name = notice.name
            event.properties = {**event.properties, **notice.properties}
            event.is_test = notice.is_test
        if created and notice.is_retraction:
            event.trigger_time = notice.trigger_time
            event.name = notice.name
        if newer:
            event.latest_notice_at = notice.alert_time
            event.record_number = notice.record_number
        if notice.is_retraction:
            event.state = TransientEvent.State.RETRACTED
            event.retracted_at = notice.alert_time
            outcome = "retracted"
        event.save()
        TransientNotice.objects.create(
            event=event,
            digest=notice.digest,
            alert_type=notice.alert_type,
            record_number=notice.record_number,
            alert_time=notice.alert_time,
            content=dict(notice.content),
        )
        from ..linking import link_transient

        link_transient(event.pk)  # in this transaction: a notice is never stored without its links
        transaction.on_commit(lambda: _changed(event.pk, outcome), robust=True)
    logger.info("%s %s: %s (%s notice)", notice.source, notice.event_id, outcome, notice.alert_type)
    return TransientResult(outcome, event.pk)


def _changed(event_pk: int, outcome: str) -> None:
    from ..signals import transient_event_changed

    transient_event_changed.send(sender=TransientEvent, event_pk=event_pk, outcome=outcome)
