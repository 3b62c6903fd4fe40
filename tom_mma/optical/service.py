"""One optical alert grows one Target: photometry in bulk, cutouts, Fink's scores, its place in the GW sky.

:func:`ingest_optical_alert` is the one service the optical handlers call. For an
:class:`~tom_mma.optical.alerts.OpticalAlert` it

1. finds or creates the Target through :func:`tom_mma.targets.get_or_create_target` (by the object
   id, which is kept as an alias, else within ``TOM_MMA['OPTICAL_MATCH_RADIUS_ARCSEC']`` of any
   Target, another survey's or a GW candidate's); a new Target goes to ``OPTICAL_TARGET_GROUPS``;
2. adds every point the Target lacks as ``tom_dataproducts`` ``PhotometryReducedDatum`` rows (one
   query for what exists, one bulk insert; detections as ``brightness``, non-detections and faint
   forced photometry as ``limit``, ``unit`` ``"AB mag"``), so that the same history repeated by
   each later alert, or a replay, adds nothing;
3. keeps the cutouts as ``DataProduct`` files (``fits_file``) of the newest
   ``OPTICAL_CUTOUTS_KEPT`` alerts, deleting older stamps (their files after the commit);
4. keeps Fink's scores and cross-matches: the latest as ``TargetExtra`` (``fink:<name>``), each
   alert's as a ``ReducedDatum`` of type ``fink_classification`` (the history);
5. places a new Target in the sky map of every active GW event
   (:func:`tom_mma.gw.ranking.rank_targets`), with the time since the merger, and after the commit
   sends :data:`tom_mma.signals.optical_photometry_added` with the new points, which the broker's
   classifier takes (``tom_mma`` never imports the broker).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from tom_dataproducts.models import PhotometryReducedDatum, ReducedDatum
from tom_targets.models import TargetExtra

from tom_mma.conf import mma_settings
from tom_mma.derived import mjd_to_datetime
from tom_mma.targets import TargetCandidate, get_or_create_targets

from .alerts import OpticalAlert, OpticalPoint
from .packets import AlertFormatError
from .photometry_copy import COPY_MIN_ROWS, PointRow, copy_photometry, photometry_fields
from .stamps import store_cutouts

__all__ = [
    "GWPlacement",
    "OpticalIngestResult",
    "check_alert",
    "ingest_optical_alert",
    "ingest_optical_alerts",
    "add_points",
    "FINK_HISTORY_TYPE",
]

logger = logging.getLogger(__name__)

#: ``ReducedDatum.data_type`` of the history of Fink's scores and cross-matches
FINK_HISTORY_TYPE = "fink_classification"


@dataclass(frozen=True)
class GWPlacement:
    """Where a candidate falls in an active GW event: credible level (0..1) and days since the merger."""

    superevent_id: str
    credible_level: float
    days_since_merger: float | None

    def inside(self, level: float, window_days: float) -> bool:
        """Inside the ``level`` credible region and within ``window_days`` after the merger."""
        return (
            self.credible_level <= level
            and self.days_since_merger is not None
            and 0.0 <= self.days_since_merger <= window_days
        )


@dataclass(frozen=True)
class OpticalIngestResult:
    """What one alert did to its Target."""

    target: Any
    created: bool
    photometry_added: int
    cutouts_added: int
    fink_recorded: bool
    placements: tuple[GWPlacement, ...] = ()
    gw_event: str | None = None


def check_alert(alert: OpticalAlert) -> None:
    """Refuse an alert the settings do not take (before anything of its batch is written).

    Raises
    ------
    AlertFormatError
        If ``TOM_MMA['OPTICAL_REQUIRE_CUTOUTS']`` and a cutout is missing (permanent: quarantined).
    """
    if mma_settings.OPTICAL_REQUIRE_CUTOUTS:
        missing = {"science", "template", "difference"} - {c.kind for c in alert.cutouts}
        if missing:
            raise AlertFormatError(
                f"{alert.survey} alert {alert.alert_id}: missing cutout(s): {', '.join(sorted(missing))}"
            )


def ingest_optical_alert(alert: OpticalAlert) -> OpticalIngestResult:
    """Grow the Target of ``alert`` (see the module docstring); idempotent.

    Raises
    ------
    AlertFormatError
        If ``TOM_MMA['OPTICAL_REQUIRE_CUTOUTS']`` and a cutout is missing (permanent: quarantined).
    """
    (result,) = ingest_optical_alerts([alert])
    return result


def ingest_optical_alerts(alerts: Sequence[OpticalAlert]) -> list[OpticalIngestResult]:
    """Grow the Targets of many alerts at once, as :func:`ingest_optical_alert` would one after the other.

    Each step is set-based over the batch: the Targets found or created in three look-ups
    (:func:`tom_mma.targets.get_or_create_targets`), the photometry the Targets have in one query and the
    new points in one insert (COPY on PostgreSQL), the stored stamps in one query and the new ones in one
    insert, Fink's history and extras likewise, the GW placements in one query. Two alerts of one object
    in a batch grow one Target, the later one seeing what the earlier one added.

    Returns
    -------
    list of OpticalIngestResult
        One per alert, in order.

    Raises
    ------
    AlertFormatError
        If ``TOM_MMA['OPTICAL_REQUIRE_CUTOUTS']`` and a cutout of any alert is missing (nothing is written).
    """
    alerts = list(alerts)
    for alert in alerts:
        check_alert(alert)
    if not alerts:
        return []
    candidates = [
        TargetCandidate(
            alert.name, alert.ra, alert.dec,
            aliases=(*([alert.object_id] if alert.object_id != alert.name else []), *alert.aliases),
            source=f"{alert.survey} alert {alert.alert_id}",
        )
        for alert in alerts
    ]  # fmt: skip
    pairs = get_or_create_targets(
        candidates,
        radius_arcsec=float(mma_settings.OPTICAL_MATCH_RADIUS_ARCSEC),
        groups=mma_settings.OPTICAL_TARGET_GROUPS,
    )
    targets = [t for t, _ in pairs]
    fresh = {t.pk for t, created in pairs if created}  # Targets of this batch: nothing stored for them before it
    new_points = _add_points(targets, alerts, fresh)
    cutouts = store_cutouts(targets, alerts, fresh)
    fink = _record_fink(targets, alerts, fresh)
    placements = _place(targets, alerts, [created for _, created in pairs])
    level = float(mma_settings.OBSERVATION_CREDIBLE_LEVEL)
    window = float(mma_settings.OPTICAL_GW_WINDOW_DAYS)
    results = []
    for i, (alert, (target, created)) in enumerate(zip(alerts, pairs, strict=True)):
        inside = [p for p in placements[i] if p.inside(level, window)]
        gw_event = min(inside, key=lambda p: p.credible_level).superevent_id if inside else None
        if new_points[i]:
            _send_after_commit(target, alert, new_points[i], placements[i], gw_event)
        logger.info(
            "%s alert %s (%s): target %s%s, %d new points, %d cutouts%s",
            alert.survey, alert.alert_id, alert.object_id, target.name, " (new)" if created else "",
            len(new_points[i]), cutouts[i], f", inside {gw_event}" if gw_event else "",
        )  # fmt: skip
        results.append(
            OpticalIngestResult(
                target, created, len(new_points[i]), cutouts[i], fink[i], tuple(placements[i]), gw_event
            )
        )
    return results


# -- photometry ------------------------------------------------------------------------------------
def add_points(target: Any, alert: OpticalAlert) -> list[OpticalPoint]:
    """Add the alert's points the Target lacks; return those added.

    A point is the same as a stored one when its time, band and magnitude (or limit) agree, from
    whatever source it came (the keys of ``PhotometryReducedDatum``'s unique constraints).
    """
    (added,) = _add_points([target], [alert], set())
    return added


def _add_points(targets: Sequence[Any], alerts: Sequence[OpticalAlert], fresh: set) -> list[list[OpticalPoint]]:
    """:func:`add_points` for each (target, alert) pair in order: one query, one insert."""
    stamped = [[(mjd_to_datetime(p.mjd), p) for p in alert.points] for alert in alerts]
    existing: dict[Any, set] = {t.pk: set() for t in targets}
    old = sorted({t.pk for t, points in zip(targets, stamped, strict=True) if points and t.pk not in fresh})
    times = [t for (target, points) in zip(targets, stamped, strict=True) if target.pk in old for t, _ in points]
    for start in range(0, len(old), 500):
        rows = PhotometryReducedDatum.objects.filter(
            target_id__in=old[start : start + 500], timestamp__gte=min(times), timestamp__lte=max(times)
        ).values_list("target_id", "timestamp", "bandpass", "brightness", "limit")
        for target_id, timestamp, band, brightness, limit in rows:
            existing[target_id].add((timestamp, band, brightness, limit))
    rows: list[PointRow] = []
    out = []
    for target, alert, points in zip(targets, alerts, stamped, strict=True):
        seen, added = existing[target.pk], []
        pk, telescope, alert_id = target.pk, alert.telescope, alert.alert_id
        source = f"{alert.broker} {alert.survey}".strip()
        for timestamp, point in points:
            key = (timestamp, point.band, point.magnitude, point.limit)  # the unique constraints' columns
            if key in seen:
                continue
            seen.add(key)
            added.append(point)
            rows.append((pk, timestamp, point, telescope, source, alert_id))
        out.append(added)
    if rows:
        # a concurrent writer's copy of the same point is skipped by the unique constraints
        if connection.vendor == "postgresql" and len(rows) >= COPY_MIN_ROWS:
            copy_photometry(rows)
        else:
            PhotometryReducedDatum.objects.bulk_create(
                [PhotometryReducedDatum(**photometry_fields(row)) for row in rows],
                batch_size=500,
                ignore_conflicts=True,
            )
    return out


# -- Fink ------------------------------------------------------------------------------------------
def _fink_source(alert: OpticalAlert) -> str:
    return f"{alert.broker or 'broker'} {alert.survey}:{alert.alert_id}"[:200]


def _record_fink(targets: Sequence[Any], alerts: Sequence[OpticalAlert], fresh: set) -> list[bool]:
    """Fink's scores and cross-matches: a history row per alert, the latest as TargetExtras; one query each.

    Returns whether each alert was recorded (False for an alert without scores, or one seen before).
    """
    from django.db.models import Q

    pairs = [(t, a) for t, a in zip(targets, alerts, strict=True) if a.scores or a.crossmatches]
    if not pairs:
        return [False] * len(alerts)
    old = sorted({t.pk for t, _ in pairs if t.pk not in fresh})
    seen: set[tuple[Any, str]] = set()
    extras: dict[Any, dict[str, TargetExtra]] = {t.pk: {} for t, _ in pairs}
    for start in range(0, len(old), 500):
        chunk = old[start : start + 500]
        sources = [_fink_source(a) for t, a in pairs if t.pk in set(chunk)]
        seen.update(
            ReducedDatum.objects.filter(
                target_id__in=chunk, data_type=FINK_HISTORY_TYPE, source_location__in=sources
            ).values_list("target_id", "source_location")
        )
        for extra in TargetExtra.objects.filter(Q(target_id__in=chunk) & Q(key__startswith="fink:")):
            extras[extra.target_id][extra.key] = extra
    history, recorded = [], []
    create: dict[tuple[Any, str], TargetExtra] = {}
    update: dict[int, TargetExtra] = {}
    for target, alert in zip(targets, alerts, strict=True):
        if not alert.scores and not alert.crossmatches:
            recorded.append(False)
            continue
        source = _fink_source(alert)
        if (target.pk, source) in seen:
            recorded.append(False)
            continue
        seen.add((target.pk, source))
        recorded.append(True)
        history.append(
            ReducedDatum(
                target=target, data_type=FINK_HISTORY_TYPE, timestamp=mjd_to_datetime(alert.mjd),
                source_name=alert.broker or "broker", source_location=source,
                value={"alert_id": alert.alert_id, "survey": alert.survey, "mjd": alert.mjd,
                       "scores": dict(alert.scores), "crossmatches": dict(alert.crossmatches)},
            )
        )  # fmt: skip
        # the latest values as TargetExtras, unless a newer alert has set them already
        mine = extras[target.pk]
        latest_key = f"fink:{alert.survey}:latest_mjd"
        latest = mine.get(latest_key)
        if latest is not None and latest.float_value is not None and latest.float_value > alert.mjd:
            continue
        values: dict[str, Any] = {latest_key: alert.mjd}
        values.update({f"fink:{k}": v for k, v in alert.scores})
        values.update({f"fink:{k}": v for k, v in alert.crossmatches})
        for key, value in values.items():
            text = "" if value is None else str(value)
            number = value if isinstance(value, float | int) and not isinstance(value, bool) else None
            extra = mine.get(key)
            if extra is None:
                extra = mine[key] = TargetExtra(target=target, key=key[:200], value=text, float_value=number)
                create[(target.pk, key)] = extra
            elif extra.value != text:
                extra.value, extra.float_value = text, number
                if extra.pk is not None:
                    update[extra.pk] = extra
    ReducedDatum.objects.bulk_create(history, batch_size=500)
    _share(history)
    TargetExtra.objects.bulk_create(list(create.values()), batch_size=500, ignore_conflicts=True)
    if update:
        TargetExtra.objects.bulk_update(list(update.values()), ["value", "float_value"], batch_size=500)
    return recorded


def _share(history: list[ReducedDatum]) -> None:
    """What tomtoolkit's ``post_save`` of a ``ReducedDatum`` does: share it where the Target is shared for good.

    One query for the batch's Targets that have a persistent share; the rows of those go to
    ``tom_targets.sharing.continuous_share_data``, as ``ReducedDatum.save()`` would send them.
    """
    if not history:
        return
    try:
        from tom_targets.models import PersistentShare
        from tom_targets.sharing import continuous_share_data
    except ImportError:  # a tomtoolkit without persistent shares
        return
    pks = {row.target_id for row in history}
    shared = set(PersistentShare.objects.filter(target_id__in=pks).values_list("target_id", flat=True))
    for row in history:
        if row.target_id in shared:
            continuous_share_data(row.target, reduced_datums=[row])


# -- the GW sky ------------------------------------------------------------------------------------
def _place(targets: Sequence[Any], alerts: Sequence[OpticalAlert], created: Sequence[bool]) -> list[list[GWPlacement]]:
    """Each alert's Target in the sky map of every active GW event.

    New Targets (and any not yet placed) are ranked at once, then one query reads the placements.
    """
    from tom_mma.models import EventCandidate, GWEvent

    if not GWEvent.objects.filter(state=GWEvent.State.ACTIVE, skymap__isnull=False).exists():
        return [[] for _ in alerts]
    pks = list(dict.fromkeys(t.pk for t in targets))
    placed = set(EventCandidate.objects.filter(target_id__in=pks).values_list("target_id", flat=True))
    to_rank = list(dict.fromkeys([t.pk for t, new in zip(targets, created, strict=True) if new or t.pk not in placed]))
    if to_rank:
        from tom_mma.gw.ranking import rank_targets

        rank_targets(to_rank)
    rows: dict[Any, list[tuple[str, float, Any]]] = {}
    for target_id, superevent_id, level, event_time in EventCandidate.objects.filter(
        target_id__in=pks, retracted=False, event__state=GWEvent.State.ACTIVE
    ).values_list("target_id", "event__superevent_id", "credible_level", "event__event_time"):
        rows.setdefault(target_id, []).append((superevent_id, level, event_time))
    out = []
    for target, alert in zip(targets, alerts, strict=True):
        moment = mjd_to_datetime(alert.mjd)
        placements = []
        for superevent_id, level, event_time in rows.get(target.pk, ()):
            days = (moment - event_time).total_seconds() / 86400.0 if event_time is not None else None
            placements.append(GWPlacement(superevent_id, float(level), days))
        out.append(sorted(placements, key=lambda p: (p.credible_level, p.superevent_id)))
    return out


def _point_dicts(alert: OpticalAlert, target: Any, points: Sequence[OpticalPoint], gw_event: str | None) -> list[dict]:
    return [
        {
            "object_name": target.name,
            "aliases": [alert.name, alert.object_id] if alert.name != target.name else [alert.object_id],
            "ra": target.ra,
            "dec": target.dec,
            "mjd": p.mjd,
            "band": p.band,
            "magnitude": p.limit if p.is_limit else p.magnitude,
            "magnitude_error": p.magnitude_error,
            "upper_limit": p.is_limit,
            "system": p.system,
            "telescope": alert.telescope,
            "source": f"{alert.broker} {alert.survey} {alert.alert_id}".strip(),
            "gw_event": gw_event,
        }  # fmt: skip
        for p in points
    ]


def _send_after_commit(
    target: Any,
    alert: OpticalAlert,
    points: Sequence[OpticalPoint],
    placements: list[GWPlacement],
    gw_event: str | None,
) -> None:
    from tom_mma.signals import optical_photometry_added

    payload = _point_dicts(alert, target, points, gw_event)

    def send() -> None:
        optical_photometry_added.send(
            sender=OpticalAlert,
            target=target,
            alert=alert,
            points=payload,
            placements=tuple(placements),
            gw_event=gw_event,
        )

    transaction.on_commit(send, robust=True)
