"""The TOM side of derived alerts.

Store each one, merge its candidate into a Target, add its photometry, keep the score history, and evaluate
the observation rules.

:func:`ingest_derived_alerts` is the one service: the results-topic handler
(``tom_mma.handlers.derived.derived_alert_handler``) hands it a stream batch's alerts at once, and
:func:`ingest_derived_alert` (the broker class ``tom_mma.alerts``, one alert) is a batch of one. It is
idempotent on ``alert_id``: a replayed stream adds nothing.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Count
from tom_dataproducts.models import PhotometryReducedDatum

from tom_mma.lightcurve import LightCurvePoint, ScorePoint, cached_lightcurve_svg, svg_data_uri
from tom_mma.models import DerivedAlertRecord, ObservationTrigger
from tom_mma.rules import evaluate_rules
from tom_mma.schemas.derived_alert import AlertPoint, DerivedAlert
from tom_mma.targets import TargetCandidate, get_or_create_targets

__all__ = [
    "PHOTOMETRY_SOURCE",
    "DerivedAlertResult",
    "ingest_derived_alert",
    "ingest_derived_alerts",
    "add_photometry",
    "add_photometry_many",
    "mjd_to_datetime",
    "ScoreRow",
    "gw_event_urls",
    "lightcurve_points",
    "score_history",
    "score_history_context",
]

logger = logging.getLogger(__name__)

#: ``source_name`` of the photometry points added from derived alerts.
PHOTOMETRY_SOURCE = "tom-mma derived alert"

_MJD_EPOCH = datetime(1858, 11, 17, tzinfo=UTC)


def mjd_to_datetime(mjd: float) -> datetime:
    """The UTC datetime of a Modified Julian Date (to the microsecond; the same float gives the same time).

    Examples
    --------
    >>> mjd_to_datetime(60796.5).isoformat()
    '2025-05-01T12:00:00+00:00'
    """
    return _MJD_EPOCH + timedelta(days=mjd)


@dataclass(frozen=True)
class DerivedAlertResult:
    """What :func:`ingest_derived_alert` did.

    Attributes
    ----------
    record : DerivedAlertRecord
        The stored alert (the earlier row on a replay).
    created : bool
        False if the alert had been ingested before (nothing else was done).
    target : Target or None
        The Target of the candidate.
    target_created : bool
        True if the alert created the Target.
    photometry_added : int
        New photometry rows.
    triggers : tuple of ObservationTrigger
        Observation requests claimed by this alert.
    """

    record: DerivedAlertRecord
    created: bool
    target: Any = None
    target_created: bool = False
    photometry_added: int = 0
    triggers: tuple[ObservationTrigger, ...] = field(default_factory=tuple)


def _record_fields(alert: DerivedAlert, delivery: Mapping[str, Any] | None) -> dict[str, Any]:
    return {
        "kind": alert.kind,
        "candidate_name": alert.candidate.name,
        "ra": alert.candidate.ra,
        "dec": alert.candidate.dec,
        "kilonova_score": alert.kilonova_score,
        "model_version": alert.model_version,
        "features": dict(alert.features),
        "gw_event": alert.gw_event or "",
        "latest_point_mjd": alert.latest_point_mjd,
        "alert_created": datetime.fromisoformat(alert.created.replace("Z", "+00:00")),
        "source_message_ids": list(alert.source_message_ids),
        "retracts": uuid.UUID(alert.retracts) if alert.retracts else None,
        "delivery": _json_safe(dict(delivery or {})),
        "raw": alert.to_dict(),
    }


def _json_safe(value: dict[str, Any]) -> dict[str, Any]:
    return {str(k): v if isinstance(v, str | int | float | bool | type(None)) else str(v) for k, v in value.items()}


def ingest_derived_alert(alert: DerivedAlert, metadata: Mapping[str, Any] | None = None) -> DerivedAlertResult:
    """Store a derived alert and act on it, once (:func:`ingest_derived_alerts` for one alert).

    A classification is merged into a Target (``tom_mma.targets.get_or_create_targets``), its photometry
    is added (points already there are skipped), and the observation rules are evaluated
    (``tom_mma.rules``). A retraction marks the alert it retracts as retracted (also when it arrives
    first); it adds nothing else.

    Parameters
    ----------
    alert : DerivedAlert
        The parsed alert.
    metadata : mapping, optional
        Where it came from (topic, partition, offset, hop ``_id``); stored with it.

    Returns
    -------
    DerivedAlertResult
    """
    try:
        return ingest_derived_alerts([(alert, metadata)])[0]
    except IntegrityError:
        # a concurrent worker stored the same alert_id first
        existing = DerivedAlertRecord.objects.filter(alert_id=alert.alert_id).select_related("target").first()
        if existing is None:
            raise
        logger.info("derived alert %s: ingested concurrently (record %s)", alert.alert_id, existing.pk)
        return DerivedAlertResult(record=existing, created=False, target=existing.target)


def ingest_derived_alerts(
    alerts: Sequence[tuple[DerivedAlert, Mapping[str, Any] | None]],
) -> list[DerivedAlertResult]:
    """Store many derived alerts and act on them, as :func:`ingest_derived_alert` would one after the other.

    The alerts are taken in order. Classifications between two retractions are handled together: their
    Targets in one look-up (:func:`~tom_mma.targets.get_or_create_targets`: a later alert of the batch finds
    the Target an earlier one created), their records in one insert, their photometry in one insert
    (:func:`add_photometry_many`); the observation rules are evaluated for each in order. A retraction is
    handled where it stands. An alert stored before, or earlier in the batch, adds nothing.

    Parameters
    ----------
    alerts : sequence of (DerivedAlert, mapping or None)
        The parsed alerts and where each came from (topic, partition, offset, hop ``_id``).

    Returns
    -------
    list of DerivedAlertResult
        One per alert, in order.

    Raises
    ------
    IntegrityError
        If a concurrent writer stored one of the alerts meanwhile (nothing of the batch is kept: call again,
        or one by one).
    """
    items = list(alerts)
    keys = [uuid.UUID(str(alert.alert_id)) for alert, _ in items]
    stored = {
        r.alert_id: r
        for chunk in _chunks(sorted(set(keys)), 500)
        for r in DerivedAlertRecord.objects.filter(alert_id__in=chunk).select_related("target")
    }
    results: list[DerivedAlertResult | None] = [None] * len(items)
    first: dict[uuid.UUID, int] = {}
    run: list[int] = []

    def flush() -> None:
        for i, result in zip(run, _ingest_classifications([items[i] for i in run]), strict=True):
            results[i] = result
        run.clear()

    with transaction.atomic():
        for i, ((alert, metadata), key) in enumerate(zip(items, keys, strict=True)):
            if key in stored:
                logger.info("derived alert %s: already ingested (record %s); nothing to do", key, stored[key].pk)
                results[i] = DerivedAlertResult(record=stored[key], created=False, target=stored[key].target)
            elif key in first:
                continue  # the same alert twice in the batch: the first one's record (below)
            elif alert.is_retraction:
                first[key] = i
                flush()  # what it may retract is stored first
                results[i] = _ingest_retraction(alert, metadata)
            else:
                first[key] = i
                run.append(i)
        flush()
    for i, key in enumerate(keys):
        if results[i] is None:
            earlier = results[first[key]]
            results[i] = DerivedAlertResult(record=earlier.record, created=False, target=earlier.target)
    return results  # type: ignore[return-value]


def _chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _ingest_classifications(
    items: Sequence[tuple[DerivedAlert, Mapping[str, Any] | None]],
) -> list[DerivedAlertResult]:
    """New classification alerts, in order: Targets, records and photometry at once, then each one's rules."""
    if not items:
        return []
    candidates = [
        TargetCandidate(a.candidate.name, a.candidate.ra, a.candidate.dec, tuple(a.candidate.aliases),
                        f"derived alert {a.alert_id}")
        for a, _ in items
    ]  # fmt: skip
    targets = get_or_create_targets(candidates)
    ids = [str(alert.alert_id) for alert, _ in items]
    early = {
        str(r.retracts): r
        for chunk in _chunks(ids, 500)
        for r in DerivedAlertRecord.objects.filter(kind=DerivedAlertRecord.Kind.RETRACTION, retracts__in=chunk)
    }
    records = []
    for (alert, metadata), (target, _) in zip(items, targets, strict=True):
        fields = _record_fields(alert, metadata)
        retraction = early.get(str(uuid.UUID(str(alert.alert_id))))
        if retraction is not None:  # the retraction came first
            fields.update(retracted=True, retraction_reason=retraction.retraction_reason)
            DerivedAlertRecord.objects.filter(pk=retraction.pk, target__isnull=True).update(target=target)
        records.append(DerivedAlertRecord(alert_id=alert.alert_id, target=target, **fields))
    DerivedAlertRecord.objects.bulk_create(records, batch_size=500)
    if any(r.pk is None for r in records):  # a backend without RETURNING
        pks = dict(DerivedAlertRecord.objects.filter(alert_id__in=[r.alert_id for r in records]).values_list(
            "alert_id", "pk"))  # fmt: skip
        for record in records:
            record.pk = pks[uuid.UUID(str(record.alert_id))]
    added = add_photometry_many(
        [
            (target, alert.photometry, str(alert.alert_id))
            for (alert, _), (target, _) in zip(items, targets, strict=True)
        ]
    )
    results = []
    for (alert, _), (target, target_created), record, n_added in zip(items, targets, records, added, strict=True):
        triggers: list[ObservationTrigger] = []
        if record.retracted:
            logger.info("derived alert %s: retracted before it arrived; no rules evaluated", alert.alert_id)
        else:
            triggers = evaluate_rules(alert, record, target)
        logger.info(
            "derived alert %s: %s (score %.3f, model %s) -> target %s%s, %d new photometry points, %d triggers",
            alert.alert_id,
            alert.candidate.name,
            alert.kilonova_score,
            alert.model_version,
            target.pk,
            " (new)" if target_created else "",
            n_added,
            len(triggers),
        )
        results.append(DerivedAlertResult(record=record, created=True, target=target, target_created=target_created,
                                          photometry_added=n_added, triggers=tuple(triggers)))  # fmt: skip
    return results


def _ingest_retraction(alert: DerivedAlert, metadata: Mapping[str, Any] | None) -> DerivedAlertResult:
    retracted = DerivedAlertRecord.objects.select_for_update().filter(alert_id=alert.retracts).first()
    target = retracted.target if retracted is not None else None
    fields = _record_fields(alert, metadata)
    fields.update(retraction_reason=alert.reason or "")
    record = DerivedAlertRecord.objects.create(alert_id=alert.alert_id, target=target, **fields)
    if retracted is not None:
        DerivedAlertRecord.objects.filter(pk=retracted.pk).update(retracted=True, retraction_reason=alert.reason)
        logger.info("derived alert %s: retracts %s (%s)", alert.alert_id, alert.retracts, alert.reason)
    else:
        logger.info(
            "derived alert %s: retracts %s, not received yet; it will arrive retracted",
            alert.alert_id,
            alert.retracts,
        )
    return DerivedAlertResult(record=record, created=True, target=target)


def add_photometry(target: Any, points: tuple[AlertPoint, ...] | list[AlertPoint], alert_id: str = "") -> int:
    """Add the photometry points the Target does not have yet; return how many were added.

    Points are ``tom_dataproducts`` ``PhotometryReducedDatum`` rows (the model the target page plots):
    ``brightness`` / ``brightness_error`` for detections, ``limit`` for upper limits, ``bandpass``,
    ``telescope``, the time from the MJD, ``unit`` from the point's magnitude system (``"AB mag"``,
    ``"Vega mag"``). A point the Target has already (same time, band and
    magnitude or limit), from any source, is skipped.
    """
    return add_photometry_many([(target, points, alert_id)])[0]


def _point_key(point: AlertPoint) -> tuple[datetime, str, float | None, float | None]:
    """The keys of the photometry table's unique constraints (instrument and reduction_version are blank)."""
    if point.upper_limit:
        return mjd_to_datetime(point.mjd), point.band, None, point.magnitude
    return mjd_to_datetime(point.mjd), point.band, point.magnitude, None


def add_photometry_many(
    items: Sequence[tuple[Any, Sequence[AlertPoint], str]],
) -> list[int]:
    """:func:`add_photometry` for many (target, points, alert id) at once: one look-up, one insert.

    Taken in order: a point an earlier item adds (or the Target has) is skipped for a later one.

    Returns
    -------
    list of int
        How many rows each item added.
    """
    items = [(t, tuple(ps), a) for t, ps, a in items]
    wanted = [(t, ps) for t, ps, _ in items if ps]
    if not wanted:
        return [0] * len(items)
    existing: set[tuple[Any, ...]] = set()
    by_target: dict[int, set[datetime]] = {}
    for target, points in wanted:
        by_target.setdefault(target.pk, set()).update(mjd_to_datetime(p.mjd) for p in points)
    for chunk in _lookup_chunks(by_target):
        target_ids = list(chunk)
        stamps = sorted(set().union(*chunk.values()))
        existing.update(
            PhotometryReducedDatum.objects.filter(target_id__in=target_ids, timestamp__in=stamps).values_list(
                "target_id", "timestamp", "bandpass", "brightness", "limit"
            )
        )
    new: list[PhotometryReducedDatum] = []
    planned: list[int] = []
    for target, points, alert_id in items:
        before = len(new)
        for point in points:
            key = (target.pk, *_point_key(point))
            if key in existing:
                continue
            existing.add(key)
            timestamp, band, brightness, limit = key[1:]
            new.append(
                PhotometryReducedDatum(
                    target=target,
                    timestamp=timestamp,
                    bandpass=band,
                    brightness=brightness,
                    brightness_error=point.magnitude_error,
                    limit=limit,
                    unit=f"{point.system} mag",  # "AB mag" or "Vega mag", as the alert says
                    telescope=point.telescope or "",
                    source_name=PHOTOMETRY_SOURCE,
                    source_location=str(alert_id),
                    value={"mjd": point.mjd},
                )
            )
        planned.append(len(new) - before)
    if not new:
        return planned
    ids = sorted({d.target_id for d in new})
    before = _photometry_counts(ids)
    # the unique constraints skip a concurrent writer's copy of the same point
    PhotometryReducedDatum.objects.bulk_create(new, batch_size=1000, ignore_conflicts=True)
    after = _photometry_counts(ids)
    stored = Counter({pk: after.get(pk, 0) - before.get(pk, 0) for pk in ids})
    added = []
    for (target, _, _), n in zip(items, planned, strict=True):
        k = min(n, stored[target.pk]) if n else 0  # a concurrent writer's copies count for it, not here
        stored[target.pk] -= k
        added.append(k)
    return added


def _lookup_chunks(by_target: dict[int, set[datetime]], limit: int = 900) -> list[dict[int, set[datetime]]]:
    """Groups of Targets whose look-up stays under ``limit`` query parameters (SQLite's bound)."""
    chunks: list[dict[int, set[datetime]]] = [{}]
    size = 0
    for pk, stamps in by_target.items():
        if chunks[-1] and size + 1 + len(stamps) > limit:
            chunks.append({})
            size = 0
        chunks[-1][pk] = stamps
        size += 1 + len(stamps)
    return chunks


def _photometry_counts(target_ids: Sequence[int]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for chunk in _chunks(list(target_ids), 500):
        rows = PhotometryReducedDatum.objects.filter(target_id__in=chunk).values("target_id").annotate(n=Count("id"))
        counts.update({r["target_id"]: r["n"] for r in rows})
    return counts


def score_history(target: Any) -> list[DerivedAlertRecord]:
    """The Target's kilonova classifications, oldest latest-point first (retracted ones included)."""
    return list(
        DerivedAlertRecord.objects.filter(target=target, kind=DerivedAlertRecord.Kind.CLASSIFICATION).order_by(
            "latest_point_mjd", "received"
        )
    )


@dataclass(frozen=True)
class ScoreRow:
    """A row of the score history table: the record, and the URL of its GW event's page (``""`` if none)."""

    record: DerivedAlertRecord
    gw_event_url: str


def gw_event_urls(names: set[str]) -> dict[str, str]:
    """The page URL of each of these superevents that the TOM has (a TOM without the GW pages: none)."""
    from django.urls import NoReverseMatch, reverse

    from tom_mma.models import GWEvent

    urls = {}
    for name in GWEvent.objects.filter(superevent_id__in=names).values_list("superevent_id", flat=True):
        try:
            urls[name] = reverse("tom_mma_gw:event-detail", args=[name])
        except NoReverseMatch:  # a TOM that does not include the GW pages
            break
    return urls


def lightcurve_points(target: Any) -> list[LightCurvePoint]:
    """The Target's photometry (``PhotometryReducedDatum`` with a brightness or a limit), oldest first."""
    points = []
    data = PhotometryReducedDatum.objects.filter(target=target).order_by("timestamp")
    for datum in data:
        magnitude = datum.brightness if datum.brightness is not None else datum.limit
        if magnitude is None:
            continue
        mjd = (datum.timestamp - _MJD_EPOCH).total_seconds() / 86400.0
        points.append(LightCurvePoint(mjd, datum.bandpass or "?", magnitude, datum.brightness_error,
                                      datum.brightness is None))  # fmt: skip
    return points


def score_history_context(context: Mapping[str, Any]) -> dict[str, Any]:
    """Context of the target page's "Kilonova score" tab (an AppConfig ``target_detail_tabs`` entry).

    The light curve with the score over time as an SVG data URI (``plot``), the history's rows with a link to
    each GW event (``rows``), and the rules' requests (``triggers``).
    """
    target = context["object"]
    history = score_history(target)
    urls = gw_event_urls({r.gw_event for r in history if r.gw_event})
    scores = [ScorePoint(r.latest_point_mjd, r.kilonova_score, r.retracted) for r in history]
    return {
        "target": target,
        "score_history": history,
        "rows": [ScoreRow(r, urls.get(r.gw_event, "")) for r in history],
        "plot": svg_data_uri(cached_lightcurve_svg(lightcurve_points(target), scores)),
        "triggers": ObservationTrigger.objects.filter(target=target).prefetch_related(
            "observation_records__gw_event_links"
        ),
    }
