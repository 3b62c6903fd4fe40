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

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import connection, transaction
from tom_dataproducts.models import DataProduct, PhotometryReducedDatum, ReducedDatum
from tom_targets.models import TargetExtra

from tom_mma.conf import mma_settings
from tom_mma.derived import mjd_to_datetime
from tom_mma.targets import get_or_create_target

from .alerts import OpticalAlert, OpticalPoint
from .packets import AlertFormatError

__all__ = ["GWPlacement", "OpticalIngestResult", "ingest_optical_alert", "add_points", "FINK_HISTORY_TYPE"]

logger = logging.getLogger(__name__)

#: ``ReducedDatum.data_type`` of the history of Fink's scores and cross-matches
FINK_HISTORY_TYPE = "fink_classification"
_CUTOUT_PREFIX = "optical:"


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


def ingest_optical_alert(alert: OpticalAlert) -> OpticalIngestResult:
    """Grow the Target of ``alert`` (see the module docstring); idempotent.

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
    aliases = [alert.object_id] if alert.object_id != alert.name else []
    target, created = get_or_create_target(
        alert.name, alert.ra, alert.dec, aliases=[*aliases, *alert.aliases],
        source=f"{alert.survey} alert {alert.alert_id}",
        radius_arcsec=float(mma_settings.OPTICAL_MATCH_RADIUS_ARCSEC),
        groups=mma_settings.OPTICAL_TARGET_GROUPS,
    )  # fmt: skip
    new_points = add_points(target, alert)
    cutouts = _store_cutouts(target, alert)
    fink = _record_fink(target, alert)
    placements = _place(target, alert, rank=created)
    level = float(mma_settings.OBSERVATION_CREDIBLE_LEVEL)
    window = float(mma_settings.OPTICAL_GW_WINDOW_DAYS)
    inside = [p for p in placements if p.inside(level, window)]
    gw_event = min(inside, key=lambda p: p.credible_level).superevent_id if inside else None
    if new_points:
        _send_after_commit(target, alert, new_points, placements, gw_event)
    logger.info(
        "%s alert %s (%s): target %s%s, %d new points, %d cutouts%s",
        alert.survey, alert.alert_id, alert.object_id, target.name, " (new)" if created else "",
        len(new_points), cutouts, f", inside {gw_event}" if gw_event else "",
    )  # fmt: skip
    return OpticalIngestResult(target, created, len(new_points), cutouts, fink, tuple(placements), gw_event)


# -- photometry ------------------------------------------------------------------------------------
def _row_key(timestamp: Any, band: str, brightness: float | None, limit: float | None) -> tuple:
    return (timestamp, band, brightness, limit)


def add_points(target: Any, alert: OpticalAlert) -> list[OpticalPoint]:
    """Add the alert's points the Target lacks; return those added.

    A point is the same as a stored one when its time, band and magnitude (or limit) agree, from
    whatever source it came (the keys of ``PhotometryReducedDatum``'s unique constraints).
    """
    if not alert.points:
        return []
    stamped = [(mjd_to_datetime(p.mjd), p) for p in alert.points]
    times = [t for t, _ in stamped]
    existing = {
        _row_key(*row)
        for row in PhotometryReducedDatum.objects.filter(
            target=target, timestamp__gte=min(times), timestamp__lte=max(times)
        ).values_list("timestamp", "bandpass", "brightness", "limit")
    }
    rows, added = [], []
    source = f"{alert.broker} {alert.survey}".strip()
    for timestamp, point in stamped:
        key = _row_key(timestamp, point.band, point.magnitude, point.limit)
        if key in existing:
            continue
        existing.add(key)
        added.append(point)
        rows.append(
            PhotometryReducedDatum(
                target=target, timestamp=timestamp, bandpass=point.band, brightness=point.magnitude,
                brightness_error=point.magnitude_error, limit=point.limit, unit=f"{point.system} mag",
                telescope=alert.telescope, source_name=source, source_location=alert.alert_id,
                value={"mjd": point.mjd, "kind": point.kind, "flux": point.flux, "flux_error": point.flux_error,
                       "system": point.system},
            )
        )  # fmt: skip
    if rows:
        # a concurrent writer's copy of the same point is skipped by the unique constraints
        if connection.vendor == "postgresql" and len(rows) >= _COPY_MIN_ROWS:
            _copy_photometry(rows)
        else:
            PhotometryReducedDatum.objects.bulk_create(rows, batch_size=500, ignore_conflicts=True)
    return added


# below this many rows an INSERT is as cheap as the COPY's extra statements
_COPY_MIN_ROWS = 50
_STAGE = "tom_mma_optical_photometry_stage"


def _copy_photometry(rows: list[PhotometryReducedDatum]) -> None:
    """Insert photometry rows through PostgreSQL's COPY into a session-local staging table.

    Then ``INSERT ... ON CONFLICT DO NOTHING`` (the unique constraints still skip a concurrent copy of a point).

    A Rubin alert's history is hundreds of rows: building and sending them through the ORM was most
    of an alert's cost (a profile: ~70 %).
    """
    from psycopg.types.json import Jsonb

    meta = PhotometryReducedDatum._meta
    fields = [f for f in meta.concrete_fields if not f.primary_key]
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    table = connection.ops.quote_name(meta.db_table)
    with connection.cursor() as cursor, connection.wrap_database_errors:
        cursor.execute(f"CREATE TEMP TABLE IF NOT EXISTS {_STAGE} AS SELECT {columns} FROM {table} WITH NO DATA")
        raw = cursor.cursor
        with raw.copy(f"COPY {_STAGE} ({columns}) FROM STDIN") as copy:
            for row in rows:
                values = []
                for f in fields:
                    value = getattr(row, f.attname)
                    values.append(Jsonb(value) if f.name == "value" else value)
                copy.write_row(values)
        cursor.execute(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {_STAGE} ON CONFLICT DO NOTHING")
        cursor.execute(f"DELETE FROM {_STAGE}")


# -- cutouts ---------------------------------------------------------------------------------------
def _fits_type() -> str:
    types = getattr(settings, "DATA_PRODUCT_TYPES", None) or {"fits_file": ()}
    return "fits_file" if "fits_file" in types else ""


def _store_cutouts(target: Any, alert: OpticalAlert) -> int:
    kept = mma_settings.OPTICAL_CUTOUTS_KEPT
    if not alert.cutouts or kept == 0:
        return 0
    prefix = f"{_CUTOUT_PREFIX}{alert.survey}:"
    stored = list(
        DataProduct.objects.filter(target=target, product_id__startswith=prefix).only(
            "pk", "product_id", "extra_data", "data"
        )
    )
    by_alert: dict[str, float] = {}
    for product in stored:
        try:
            by_alert[product.product_id.split(":")[2]] = float(json.loads(product.extra_data)["mjd"])
        except (ValueError, KeyError, IndexError, TypeError):
            by_alert[product.product_id.split(":")[2] if product.product_id.count(":") >= 2 else product.product_id] = (
                0.0
            )
    if alert.alert_id in by_alert:
        return 0  # this alert's stamps are there already (a replay)
    by_alert[alert.alert_id] = alert.mjd
    keep = (
        set(sorted(by_alert, key=lambda a: (by_alert[a], a), reverse=True)[:kept])
        if kept is not None
        else set(by_alert)
    )
    added = 0
    if alert.alert_id in keep:
        for cutout in alert.cutouts:
            product = DataProduct(
                product_id=f"{prefix}{alert.alert_id}:{cutout.kind}", target=target, data_product_type=_fits_type(),
                extra_data=json.dumps({"mjd": alert.mjd, "kind": cutout.kind, "alert_id": alert.alert_id,
                                       "survey": alert.survey, "source": "tom_mma.optical"}),
            )  # fmt: skip
            product.data.save(
                f"{alert.survey}_{alert.alert_id}_{cutout.kind}_{cutout.filename.rsplit('/', 1)[-1]}",
                ContentFile(cutout.data),
                save=False,
            )
            product.save()
            added += 1
    old = [p for p in stored if p.product_id.split(":")[2] not in keep]
    if old:
        names = [p.data.name for p in old if p.data]
        storage = DataProduct._meta.get_field("data").storage
        DataProduct.objects.filter(pk__in=[p.pk for p in old]).delete()
        # files go only once the rows are gone for good (a rollback keeps both)
        transaction.on_commit(lambda: [storage.delete(n) for n in names if storage.exists(n)], robust=True)
    return added


# -- Fink ------------------------------------------------------------------------------------------
def _record_fink(target: Any, alert: OpticalAlert) -> bool:
    if not alert.scores and not alert.crossmatches:
        return False
    source = f"{alert.broker or 'broker'} {alert.survey}:{alert.alert_id}"[:200]
    if ReducedDatum.objects.filter(target=target, data_type=FINK_HISTORY_TYPE, source_location=source).exists():
        return False
    ReducedDatum.objects.create(
        target=target, data_type=FINK_HISTORY_TYPE, timestamp=mjd_to_datetime(alert.mjd),
        source_name=alert.broker or "broker",
        source_location=source, value={"alert_id": alert.alert_id, "survey": alert.survey, "mjd": alert.mjd,
                                       "scores": dict(alert.scores), "crossmatches": dict(alert.crossmatches)},
    )  # fmt: skip
    # the latest values as TargetExtras, unless a newer alert has set them already
    latest_key = f"fink:{alert.survey}:latest_mjd"
    extras = {e.key: e for e in TargetExtra.objects.filter(target=target, key__startswith="fink:")}
    latest = extras.get(latest_key)
    if latest is not None and latest.float_value is not None and latest.float_value > alert.mjd:
        return True
    values: dict[str, Any] = {latest_key: alert.mjd}
    values.update({f"fink:{k}": v for k, v in alert.scores})
    values.update({f"fink:{k}": v for k, v in alert.crossmatches})
    create, update = [], []
    for key, value in values.items():
        text = "" if value is None else str(value)
        number = value if isinstance(value, float | int) and not isinstance(value, bool) else None
        extra = extras.get(key)
        if extra is None:
            create.append(TargetExtra(target=target, key=key[:200], value=text, float_value=number))
        elif extra.value != text:
            extra.value, extra.float_value = text, number
            update.append(extra)
    TargetExtra.objects.bulk_create(create, ignore_conflicts=True)
    if update:
        TargetExtra.objects.bulk_update(update, ["value", "float_value"])
    return True


# -- the GW sky ------------------------------------------------------------------------------------
def _place(target: Any, alert: OpticalAlert, rank: bool) -> list[GWPlacement]:
    from tom_mma.models import EventCandidate, GWEvent

    if not GWEvent.objects.filter(state=GWEvent.State.ACTIVE, skymap__isnull=False).exists():
        return []
    if rank or not EventCandidate.objects.filter(target=target).exists():
        from tom_mma.gw.ranking import rank_targets

        rank_targets([target.pk])
    placements = []
    moment = mjd_to_datetime(alert.mjd)
    rows = EventCandidate.objects.filter(target=target, retracted=False, event__state=GWEvent.State.ACTIVE)
    for superevent_id, level, event_time in rows.values_list(
        "event__superevent_id", "credible_level", "event__event_time"
    ):
        days = (moment - event_time).total_seconds() / 86400.0 if event_time is not None else None
        placements.append(GWPlacement(superevent_id, float(level), days))
    return sorted(placements, key=lambda p: (p.credible_level, p.superevent_id))


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
