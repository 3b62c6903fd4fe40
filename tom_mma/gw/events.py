"""GW events from LVK notices: :func:`ingest_notice` stores a parsed notice and recomputes its event's state.

Handlers call :func:`ingest_notice`; nothing else writes events and notices. One transaction stores the event,
its sky map versions (:mod:`tom_mma.gw.skymap_store`), the notice and the event's new state; after the
commit the signals of :mod:`tom_mma.signals` are sent, and :mod:`tom_mma.receivers` turns them into tasks
(re-ranking for a new sky map, :mod:`tom_mma.gw.ranking`; cancelling a retracted event's requests,
:mod:`tom_mma.gw.observations`).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from tom_mma import signals
from tom_mma.conf import mma_settings
from tom_mma.models import EventCandidate, EventNotice, EventObservation, EventSkyMap, GWEvent

from .notices import AlertType, EventKind, GWNotice
from .skymap_store import store_skymap
from .skymaps import MultiOrderSkyMap

__all__ = ["NoticeResult", "accepts_kind", "ingest_notice", "is_retracted"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class NoticeResult:
    """What :func:`ingest_notice` did.

    Attributes
    ----------
    notice : EventNotice or None
        The stored notice (the existing one for a redelivery); None when the event kind is not accepted.
    created : bool
        False for a redelivered (or already seen through the other transport) notice.
    skymap_changed : bool
        The event's current GW sky map changed: its candidates are being re-ranked.
    retracted : bool
        This notice retracted the event.
    ignored : str
        Why nothing was stored (an event kind this TOM does not take), else empty. The reliable stream
        reports such a message ``ignored`` with this reason.
    """

    notice: EventNotice | None
    created: bool = False
    skymap_changed: bool = False
    retracted: bool = False
    ignored: str = ""


def is_retracted(superevent_id: str) -> bool:
    """Whether this TOM holds the GW event ``superevent_id`` as retracted.

    The documented way for other apps (``tom_mma_broker`` among them) to ask about an event's state.
    """
    return GWEvent.objects.filter(superevent_id=superevent_id, state=GWEvent.State.RETRACTED).exists()


def accepts_kind(kind: EventKind | str) -> bool:
    """Whether this TOM takes events of this kind (``TOM_MMA["ACCEPT_MOCK_EVENTS"]``, ``...TEST_EVENTS``)."""
    kind = EventKind(kind)
    if kind is EventKind.MOCK:
        return bool(mma_settings.ACCEPT_MOCK_EVENTS)
    if kind is EventKind.TEST:
        return bool(mma_settings.ACCEPT_TEST_EVENTS)
    return True


def ingest_notice(notice: GWNotice) -> NoticeResult:
    """Store a parsed LVK notice: its event, sky map versions, the notice, and the event's new state.

    Idempotent: a notice already stored (same content digest, by either transport) changes nothing. Notices
    may arrive in any order: the event's figures, current sky map and state are recomputed from all its
    notices in their proper order (``time_created``, alert type, digest) each time.

    Parameters
    ----------
    notice : GWNotice
        From :mod:`tom_mma.gw.notices` (already validated, sky maps already read).

    Returns
    -------
    NoticeResult
    """
    if not accepts_kind(notice.kind):
        logger.info(
            "%s: ignoring a %s %s notice (not accepted by TOM_MMA settings)",
            notice.superevent_id,
            notice.kind,
            notice.alert_type,
        )
        setting = "ACCEPT_MOCK_EVENTS" if notice.kind == EventKind.MOCK else "ACCEPT_TEST_EVENTS"
        return NoticeResult(
            notice=None,
            ignored=f"{notice.superevent_id} is a {notice.kind} event: this TOM takes none "
            f"(TOM_MMA['{setting}'] is False)",
        )
    # Sky map summaries are pure and may take a few ms: compute them before taking the event's lock.
    for skymap in _maps_of(notice):
        skymap.summary()
    with transaction.atomic():
        event, _ = GWEvent.objects.select_for_update().get_or_create(
            superevent_id=notice.superevent_id, defaults={"kind": str(notice.kind)}
        )
        existing = EventNotice.objects.filter(digest=notice.digest).first()
        if existing is not None:
            logger.info(
                "%s: %s notice of %s already stored (digest %.12s)",
                notice.superevent_id,
                notice.alert_type,
                notice.time_created.isoformat(),
                notice.digest,
            )
            return NoticeResult(notice=existing)
        gw_map = combined = None
        if notice.skymap is not None:
            gw_map = store_skymap(event, EventSkyMap.Kind.GW, notice.skymap, notice.time_created)
        if notice.external_coinc is not None and notice.external_coinc.combined_skymap is not None:
            combined = store_skymap(
                event, EventSkyMap.Kind.COMBINED, notice.external_coinc.combined_skymap, notice.time_created
            )
        stored = EventNotice.objects.create(
            event=event,
            digest=notice.digest,
            alert_type=str(notice.alert_type),
            alert_rank=notice.alert_type.rank,
            time_created=notice.time_created,
            transport=notice.transport,
            skymap=gw_map,
            combined_skymap=combined,
            payload=notice.as_dict(),
        )
        skymap_changed, retracted = _refresh_event(event)
        logger.info(
            "%s: stored %s notice of %s (%s)%s%s",
            notice.superevent_id,
            notice.alert_type,
            notice.time_created.isoformat(),
            notice.transport,
            "; new current sky map" if skymap_changed else "",
            "; event retracted" if retracted else "",
        )
        event_pk, notice_pk = event.pk, stored.pk
        transaction.on_commit(lambda: _after_commit(event_pk, notice_pk, skymap_changed, retracted), robust=True)
    return NoticeResult(notice=stored, created=True, skymap_changed=skymap_changed, retracted=retracted)


def _maps_of(notice: GWNotice) -> list[MultiOrderSkyMap]:
    maps = [notice.skymap] if notice.skymap is not None else []
    if notice.external_coinc is not None and notice.external_coinc.combined_skymap is not None:
        maps.append(notice.external_coinc.combined_skymap)
    return maps


def _refresh_event(event: GWEvent) -> tuple[bool, bool]:
    """Recompute an event's figures, current sky map and state from its notices (under the event's lock).

    Returns (the current GW sky map changed while the event is active, the event became retracted).
    """
    ordered = sorted(event.notices.all(), key=lambda n: (n.time_created, n.alert_rank, n.digest))
    live = [n for n in ordered if n.alert_type != AlertType.RETRACTION]
    retraction = next((n for n in ordered if n.alert_type == AlertType.RETRACTION), None)
    with_map = [n for n in ordered if n.skymap_id is not None]
    was_state, was_skymap = event.state, event.skymap_id
    if live:
        latest = live[-1].payload
        event.event_time = dt.datetime.fromisoformat(latest["event_time"])
        event.far = latest["far"]
        event.significant = latest["significant"]
        event.group = latest["group"] or ""
        event.pipeline = latest["pipeline"] or ""
        event.search = latest["search"] or ""
        event.instruments = latest["instruments"]
        event.classification = latest["classification"]
        event.properties = latest["properties"]
    event.skymap_id = with_map[-1].skymap_id if with_map else None
    event.latest_notice_at = ordered[-1].time_created
    if retraction is not None:
        event.state = GWEvent.State.RETRACTED
        event.retracted_at = retraction.time_created
    event.save()
    newly_retracted = was_state != GWEvent.State.RETRACTED and event.state == GWEvent.State.RETRACTED
    if newly_retracted:
        _retract(event)
    skymap_changed = event.is_active and event.skymap_id is not None and event.skymap_id != was_skymap
    return skymap_changed, newly_retracted


def _retract(event: GWEvent) -> None:
    """The database half of the retraction cascade (the facility half runs after commit)."""
    marked = EventCandidate.objects.filter(event=event, retracted=False).update(retracted=True)
    pending = EventObservation.objects.filter(event=event, status=EventObservation.Status.ACTIVE).update(
        status=EventObservation.Status.CANCEL_PENDING,
        reason="the event was retracted",
        modified=timezone.now(),  # update() skips auto_now; the cancellation sweep goes by this time
    )
    logger.info(
        "%s: retracted; %d candidates marked, %d observation requests to cancel", event.superevent_id, marked, pending
    )


def _after_commit(event_pk: int, notice_pk: int, skymap_changed: bool, retracted: bool) -> None:
    """Send the signals (each receiver on its own: one failing stops no other).

    The receivers of :mod:`tom_mma.receivers` turn them into tasks: re-ranking for a new sky map, the
    cancellation of a retracted event's requests. The rows those tasks consume are already committed (the
    event's current sky map, links in ``cancel_pending``), so a lost task is found again by the sweeps.
    """
    event = GWEvent.objects.select_related("skymap").defer("skymap__fits").get(pk=event_pk)
    notice = EventNotice.objects.get(pk=notice_pk)
    _send(signals.gw_notice_received, event.superevent_id, sender=EventNotice, notice=notice, event=event)
    if skymap_changed:
        _send(signals.gw_skymap_updated, event.superevent_id, sender=GWEvent, event=event, skymap=event.skymap)
    if retracted:
        _send(
            signals.gw_event_retracted,
            event.superevent_id,
            sender=GWEvent,
            event=event,
            notice=notice,
            never_live=event.never_live,
        )


def _send(signal, superevent_id: str, **kwargs) -> None:
    for receiver, result in signal.send_robust(**kwargs):
        if isinstance(result, Exception):
            logger.error(
                "%s: receiver %s of a GW signal failed: %r",
                superevent_id,
                getattr(receiver, "__qualname__", receiver),
                result,
                exc_info=result,
            )
