"""The gravitational-wave service layer: events, notices, sky map versions, candidates, retractions.

Handlers, tasks, views and commands call these functions; nothing else writes the GW models.

- :func:`ingest_notice` stores a parsed notice in one transaction (event, sky map versions, notice, event
  state) and, after commit, sends the signals of :mod:`tom_mma.signals` and queues the work that may be slow:
  re-ranking the candidates when the current sky map changed, cancelling observation requests when the event
  was retracted.
- :func:`rank_event` ranks every Target against an event's current sky map; :func:`rank_targets` ranks some
  Targets against every active event (new Targets arrive through :mod:`tom_mma.receivers`).
- :func:`credible_level` answers "where is this position in the event's sky map" for other code.
- :func:`link_observation` records that an observation request was made for an event;
  :func:`cancel_observations` cancels the pending ones of a retracted event through their facilities;
  :func:`stale_cancellations` finds those still pending long after (what the periodic sweep queues again).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from django.db import connection, transaction
from django.forms import ValidationError as FormValidationError
from django.utils import timezone

from tom_mma import signals
from tom_mma.conf import mma_settings
from tom_mma.models import EventCandidate, EventNotice, EventObservation, EventSkyMap, GWEvent

from .notices import AlertType, EventKind, GWNotice
from .skymaps import MultiOrderSkyMap, read_multiorder

__all__ = [
    "IngestResult",
    "accepts_kind",
    "cancel_observations",
    "candidates",
    "credible_level",
    "ingest_notice",
    "link_observation",
    "load_skymap",
    "rank_event",
    "rank_targets",
    "stale_cancellations",
]

logger = logging.getLogger(__name__)

# Parsed sky maps kept per process, by SHA-256 (a parsed map with its lookups is ~2 MB).
# Proposed setting: TOM_MMA["GW_SKYMAP_CACHE_SIZE"].
SKYMAP_CACHE_SIZE = 8


@dataclass(frozen=True)
class IngestResult:
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


def accepts_kind(kind: EventKind | str) -> bool:
    """Whether this TOM takes events of this kind (``TOM_MMA["ACCEPT_MOCK_EVENTS"]``, ``...TEST_EVENTS``)."""
    kind = EventKind(kind)
    if kind is EventKind.MOCK:
        return bool(mma_settings.ACCEPT_MOCK_EVENTS)
    if kind is EventKind.TEST:
        return bool(mma_settings.ACCEPT_TEST_EVENTS)
    return True


# -- sky map versions --------------------------------------------------------------------------------------
_cache: OrderedDict[str, MultiOrderSkyMap] = OrderedDict()
_cache_lock = threading.Lock()


def _remember(skymap: MultiOrderSkyMap) -> MultiOrderSkyMap:
    with _cache_lock:
        _cache[skymap.sha256] = skymap
        _cache.move_to_end(skymap.sha256)
        while len(_cache) > SKYMAP_CACHE_SIZE:
            _cache.popitem(last=False)
    return skymap


def load_skymap(version: EventSkyMap) -> MultiOrderSkyMap:
    """The parsed sky map of a stored version, from a per-process cache keyed by its SHA-256.

    ``version`` may be loaded with ``.defer("fits")``: the bytes are fetched only on a cache miss.
    """
    with _cache_lock:
        cached = _cache.get(version.sha256)
        if cached is not None:
            _cache.move_to_end(version.sha256)
            return cached
    data = EventSkyMap.objects.values_list("fits", flat=True).get(pk=version.pk)
    return _remember(read_multiorder(bytes(data)))


def _store_skymap(event: GWEvent, kind: str, skymap: MultiOrderSkyMap, time_created) -> EventSkyMap:
    existing = EventSkyMap.objects.defer("fits").filter(event=event, sha256=skymap.sha256).first()
    if existing is not None:
        changed = []
        if time_created < existing.first_time_created:  # an older notice that arrived late
            existing.first_time_created = time_created
            changed.append("first_time_created")
        if kind == EventSkyMap.Kind.GW and existing.kind != kind:
            # the same bytes as a GW map in one notice and a combined map in another: GW wins, whatever the
            # arrival order
            existing.kind = kind
            changed.append("kind")
        if changed:
            existing.save(update_fields=changed)
        return existing
    summary = skymap.summary()
    return EventSkyMap.objects.create(
        event=event,
        kind=kind,
        sha256=skymap.sha256,
        fits=skymap.fits_bytes,
        size_bytes=len(skymap.fits_bytes),
        n_pixels=summary.n_pixels,
        max_order=summary.max_order,
        creator=str(skymap.meta.get("CREATOR", ""))[:64],
        ra=summary.ra,
        dec=summary.dec,
        area_50=summary.area_50,
        area_90=summary.area_90,
        distance_mean=summary.distance_mean,
        distance_std=summary.distance_std,
        first_time_created=time_created,
    )


# -- notices -----------------------------------------------------------------------------------------------
def ingest_notice(notice: GWNotice) -> IngestResult:
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
    IngestResult
    """
    if not accepts_kind(notice.kind):
        logger.info(
            "%s: ignoring a %s %s notice (not accepted by TOM_MMA settings)",
            notice.superevent_id,
            notice.kind,
            notice.alert_type,
        )
        setting = "ACCEPT_MOCK_EVENTS" if notice.kind == EventKind.MOCK else "ACCEPT_TEST_EVENTS"
        return IngestResult(
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
            return IngestResult(notice=existing)
        gw_map = combined = None
        if notice.skymap is not None:
            gw_map = _store_skymap(event, EventSkyMap.Kind.GW, notice.skymap, notice.time_created)
        if notice.external_coinc is not None and notice.external_coinc.combined_skymap is not None:
            combined = _store_skymap(
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
    return IngestResult(notice=stored, created=True, skymap_changed=skymap_changed, retracted=retracted)


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


# -- ranking -----------------------------------------------------------------------------------------------
def _none_if_nan(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def _rank_rows(event: GWEvent, version: EventSkyMap, rows: Sequence[tuple[int, float, float]]) -> int:
    """Rank (target pk, ra, dec) rows against a version and upsert the candidates, under the event's lock."""
    if not rows:
        return 0
    skymap = load_skymap(version)
    pks = [r[0] for r in rows]
    ra = np.fromiter((r[1] for r in rows), dtype=np.float64, count=len(rows))
    dec = np.fromiter((r[2] for r in rows), dtype=np.float64, count=len(rows))
    ranking = skymap.rank(ra, dec)
    mean = ranking.distance_mean if ranking.distance_mean is not None else [None] * len(rows)
    std = ranking.distance_std if ranking.distance_std is not None else [None] * len(rows)
    stamp = connection.ops.adapt_datetimefield_value(timezone.now())
    values = [
        (event.pk, pk, version.pk, float(p), float(c), _none_if_nan(m), _none_if_nan(s), False, stamp)
        for pk, p, c, m, s in zip(pks, ranking.probdensity, ranking.credible_level, mean, std, strict=True)
    ]
    with transaction.atomic():
        locked = GWEvent.objects.select_for_update().only("state", "skymap").get(pk=event.pk)
        if locked.state != GWEvent.State.ACTIVE or locked.skymap_id != version.pk:
            return 0  # retracted, or a newer map arrived meanwhile (its own ranking follows)
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                # one statement, one array per column: no per-row parameters to bind or parse
                cursor.execute(_upsert_sql_unnest(), [list(column) for column in zip(*values, strict=True)])
            else:
                for start in range(0, len(values), _UPSERT_BATCH):
                    batch = values[start : start + _UPSERT_BATCH]
                    cursor.execute(_upsert_sql(len(batch)), [v for row in batch for v in row])
    return len(values)


def _upsert(rows_sql: str) -> str:
    """``INSERT INTO <candidates> (<columns>) <rows_sql> ON CONFLICT (event, target) DO UPDATE SET ...``."""
    meta = EventCandidate._meta
    q = connection.ops.quote_name
    columns = [meta.get_field(name).column for name in _CANDIDATE_FIELDS]
    updated = [
        meta.get_field(name).column for name in _CANDIDATE_FIELDS if name not in ("event", "target", "retracted")
    ]
    return (
        f"INSERT INTO {q(meta.db_table)} ({', '.join(q(c) for c in columns)}) {rows_sql} "
        f"ON CONFLICT ({q(meta.get_field('event').column)}, {q(meta.get_field('target').column)}) "
        f"DO UPDATE SET {', '.join(f'{q(c)} = excluded.{q(c)}' for c in updated)}"
    )


def _upsert_sql(rows: int) -> str:
    """INSERT ... ON CONFLICT DO UPDATE of ``rows`` candidates (the same SQL on PostgreSQL and SQLite >= 3.24).

    Raw SQL because the ORM's ``bulk_create(update_conflicts=True)`` spends ~1 s compiling 10,000 rows, and
    multi-row VALUES because ``executemany`` is one round trip per row on PostgreSQL.
    """
    placeholders = f"({', '.join(['%s'] * len(_CANDIDATE_FIELDS))})"
    return _upsert(f"VALUES {', '.join([placeholders] * rows)}")


def _upsert_sql_unnest() -> str:
    """The PostgreSQL form of :func:`_upsert_sql`: ``INSERT ... SELECT FROM unnest(arrays)``."""
    arrays = ", ".join(f"%s::{_PG_TYPES[name]}[]" for name in _CANDIDATE_FIELDS)
    return _upsert(f"SELECT * FROM unnest({arrays})")


_PG_TYPES = {
    "event": "bigint",
    "target": "bigint",
    "skymap": "bigint",
    "probdensity": "double precision",
    "credible_level": "double precision",
    "distance_mean": "double precision",
    "distance_std": "double precision",
    "retracted": "boolean",
    "ranked_at": "timestamptz",
}
# Rows per statement: 9 parameters each, well under SQLite's 32,766 and PostgreSQL's 65,535.
_UPSERT_BATCH = 1000
_CANDIDATE_FIELDS = (
    "event",
    "target",
    "skymap",
    "probdensity",
    "credible_level",
    "distance_mean",
    "distance_std",
    "retracted",
    "ranked_at",
)


def _target_rows(target_ids: Iterable[int] | None = None) -> list[tuple[int, float, float]]:
    from tom_targets.base_models import BaseTarget

    qs = BaseTarget.objects.filter(ra__isnull=False, dec__isnull=False)
    if target_ids is not None:
        qs = qs.filter(pk__in=list(target_ids))
    return [(pk, ra, dec) for pk, ra, dec in qs.values_list("pk", "ra", "dec") if -90 <= dec <= 90]


def rank_event(event_id: int) -> int:
    """Rank every Target with a position against the event's current sky map.

    Idempotent (upserts one candidate row per event and Target). Does nothing for a retracted event or one
    without a sky map.

    Returns
    -------
    int
        Number of candidates written.
    """
    event = GWEvent.objects.select_related("skymap").defer("skymap__fits").get(pk=event_id)
    if not event.is_active or event.skymap is None:
        return 0
    count = _rank_rows(event, event.skymap, _target_rows())
    logger.info("%s: ranked %d targets against sky map %.12s", event.superevent_id, count, event.skymap.sha256)
    return count


def rank_targets(target_ids: Sequence[int]) -> int:
    """Rank some Targets against the current sky map of every active event (e.g. Targets just created).

    Returns
    -------
    int
        Number of candidates written.
    """
    rows = _target_rows(target_ids)
    if not rows:
        return 0
    count = 0
    events = GWEvent.objects.filter(state=GWEvent.State.ACTIVE, skymap__isnull=False)
    for event in events.select_related("skymap").defer("skymap__fits"):
        count += _rank_rows(event, event.skymap, rows)
    return count


def candidates(event: GWEvent):
    """The event's candidates, most probable first (credible level, then probability density)."""
    return (
        EventCandidate.objects.filter(event=event)
        .select_related("target")
        .order_by("credible_level", "-probdensity", "target_id")
    )


def credible_level(superevent_id: str, ra: float, dec: float) -> float | None:
    """Credible level of a position in an active event's current sky map.

    The probability of the smallest credible region containing the position (0..1; a position is "inside the
    90% region" when this is at most 0.9).

    Parameters
    ----------
    superevent_id : str
        e.g. ``"S190425z"``.
    ra, dec : float
        ICRS position in degrees.

    Returns
    -------
    float or None
        None when the event is unknown, retracted, or has no sky map.
    """
    event = (
        GWEvent.objects.filter(superevent_id=superevent_id, state=GWEvent.State.ACTIVE, skymap__isnull=False)
        .select_related("skymap")
        .defer("skymap__fits")
        .first()
    )
    if event is None:
        return None
    return float(load_skymap(event.skymap).rank(np.array([ra]), np.array([dec])).credible_level[0])


# -- observation requests ----------------------------------------------------------------------------------
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
                lambda: _send(signals.gw_observations_to_cancel, event.superevent_id, sender=GWEvent, event=event),
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
