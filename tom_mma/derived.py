"""The TOM side of derived alerts.

Store each one, merge its candidate into a Target, add its photometry, keep the score history, and evaluate
the observation rules.

:func:`ingest_derived_alert` is the one service the results-topic handler
(``tom_mma.handlers.derived.derived_alert_handler``) and the broker class (``tom_mma.alerts``) call.
It is idempotent on ``alert_id``: a replayed stream adds nothing.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from tom_dataproducts.models import PhotometryReducedDatum

from tom_mma.lightcurve import LightCurvePoint, ScorePoint, cached_lightcurve_svg, svg_data_uri
from tom_mma.models import DerivedAlertRecord, ObservationTrigger
from tom_mma.rules import evaluate_rules
from tom_mma.schemas.derived_alert import AlertPoint, DerivedAlert
from tom_mma.targets import get_or_create_target

__all__ = [
    "PHOTOMETRY_SOURCE",
    "DerivedAlertResult",
    "ingest_derived_alert",
    "add_photometry",
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
    """Store a derived alert and act on it, once.

    A classification is merged into a Target (``tom_mma.targets.get_or_create_target``), its photometry
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
    existing = DerivedAlertRecord.objects.filter(alert_id=alert.alert_id).first()
    if existing is not None:
        logger.info("derived alert %s: already ingested (record %s); nothing to do", alert.alert_id, existing.pk)
        return DerivedAlertResult(record=existing, created=False, target=existing.target)
    try:
        with transaction.atomic():
            if alert.is_retraction:
                return _ingest_retraction(alert, metadata)
            return _ingest_classification(alert, metadata)
    except IntegrityError:
        # a concurrent worker stored the same alert_id first
        existing = DerivedAlertRecord.objects.filter(alert_id=alert.alert_id).first()
        if existing is None:
            raise
        logger.info("derived alert %s: ingested concurrently (record %s)", alert.alert_id, existing.pk)
        return DerivedAlertResult(record=existing, created=False, target=existing.target)


def _ingest_classification(alert: DerivedAlert, metadata: Mapping[str, Any] | None) -> DerivedAlertResult:
    target, target_created = get_or_create_target(
        alert.candidate.name,
        alert.candidate.ra,
        alert.candidate.dec,
        aliases=alert.candidate.aliases,
        source=f"derived alert {alert.alert_id}",
    )
    fields = _record_fields(alert, metadata)
    retraction = DerivedAlertRecord.objects.filter(
        kind=DerivedAlertRecord.Kind.RETRACTION, retracts=alert.alert_id
    ).first()
    if retraction is not None:  # the retraction came first
        fields.update(retracted=True, retraction_reason=retraction.retraction_reason)
        DerivedAlertRecord.objects.filter(pk=retraction.pk, target__isnull=True).update(target=target)
    record = DerivedAlertRecord.objects.create(alert_id=alert.alert_id, target=target, **fields)
    added = add_photometry(target, alert.photometry, alert_id=alert.alert_id)
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
        added,
        len(triggers),
    )
    return DerivedAlertResult(
        record=record,
        created=True,
        target=target,
        target_created=target_created,
        photometry_added=added,
        triggers=tuple(triggers),
    )


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
    if not points:
        return 0
    # the keys of the table's unique constraints (instrument and reduction_version are blank here)
    existing = {
        (d.timestamp, d.bandpass, d.brightness, d.limit)
        for d in PhotometryReducedDatum.objects.filter(
            target=target, timestamp__in=[mjd_to_datetime(p.mjd) for p in points]
        )
    }
    new = []
    for point in points:
        timestamp = mjd_to_datetime(point.mjd)
        brightness = None if point.upper_limit else point.magnitude
        limit = point.magnitude if point.upper_limit else None
        key = (timestamp, point.band, brightness, limit)
        if key in existing:
            continue
        existing.add(key)
        new.append(
            PhotometryReducedDatum(
                target=target,
                timestamp=timestamp,
                bandpass=point.band,
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
    if not new:
        return 0
    before = PhotometryReducedDatum.objects.filter(target=target).count()
    # the unique constraints skip a concurrent writer's copy of the same point
    PhotometryReducedDatum.objects.bulk_create(new, ignore_conflicts=True)
    return PhotometryReducedDatum.objects.filter(target=target).count() - before


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
