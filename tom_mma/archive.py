"""Search what this TOM has stored of its alerts: derived alerts, optical alerts and GW candidates.

One service behind two query pages: tomtoolkit 3's Data Services (:mod:`tom_mma.dataservices.archive`)
and the older ``TOM_ALERT_CLASSES`` broker class (:mod:`tom_mma.alerts`, derived alerts only). It reads
only what ``tom_mma`` owns, never the broker app's archive:

* **derived alerts**: :class:`tom_mma.models.DerivedAlertRecord` classifications (score, received time,
  the classifier's GW event, the candidate's position);
* **optical alerts**: Targets grown by ZTF, Rubin or Fink alerts (:mod:`tom_mma.optical.service`): their
  detections from those surveys (times; limits do not count), Fink's latest class and cross-match (``TargetExtra``
  ``fink:classification``, ``fink:cdsxmatch``);
* **GW candidates**: Targets ranked in a GW event's sky map (:class:`tom_mma.models.EventCandidate`, the
  smallest credible region holding each one).

Every kind is cut to the Targets the user may view (:mod:`tom_mma.visibility`); a derived alert whose
Target is gone needs the model's view permission. Results are plain dicts (the query pages cache them).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db.models import Count, Max, Min, OuterRef, Q, QuerySet, Subquery
from django.utils.dateparse import parse_datetime
from tom_dataproducts.models import PhotometryReducedDatum
from tom_targets.models import Target, TargetExtra, TargetName

from tom_mma.models import DerivedAlertRecord, EventCandidate
from tom_mma.targets import cone_filter
from tom_mma.visibility import has_model_view_permission, visible_targets

__all__ = [
    "KINDS",
    "KIND_LABELS",
    "MAX_RESULTS",
    "FINK_CLASS_KEYS",
    "ArchiveQuery",
    "search_archive",
    "search_derived_alerts",
    "derived_alert_dict",
]

#: Results a query returns at most (the query pages show 100 and say when there were more).
MAX_RESULTS = 101

#: What the archive holds, as the query form offers it.
KINDS = {"derived": "Derived alerts", "optical": "Optical alerts", "gw": "GW candidates"}
#: A result row's kind, as the result table names it.
KIND_LABELS = {"derived": "Derived alert", "optical": "Optical alert", "gw": "GW candidate"}

#: The Target extras that hold Fink's class of an optical Target, first found wins: the class Fink's API
#: gives (``v:classification``), then the SIMBAD cross-match its stream carries (``cdsxmatch``).
FINK_CLASS_KEYS = ("fink:classification", "fink:cdsxmatch")

_MJD_UNIX_EPOCH = 40587.0


def _as_datetime(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        return value
    parsed = parse_datetime(str(value))
    if parsed is None:
        raise ValueError(f"not a date and time: {value!r}")
    return parsed


def _datetime_to_mjd(value: datetime) -> float:
    return _MJD_UNIX_EPOCH + value.timestamp() / 86400.0


def _utc_text(value: datetime | None) -> str:
    """A time as the result table shows it: UTC, to the second, no offset (the column says UTC)."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if value is not None else ""


def _float(value: Any) -> float | None:
    return None if value in (None, "") else float(value)


# -- derived alerts (also the TOM_ALERT_CLASSES broker's search) -------------------------------------
def search_derived_alerts(parameters: Mapping[str, Any]) -> list[DerivedAlertRecord]:
    """The derived-alert classifications matching a query's parameters, newest first.

    Parameters
    ----------
    parameters : mapping
        ``score_min``, ``score_max``, ``time_field`` (``"received"`` or ``"latest_point"``),
        ``time_start``, ``time_end`` (datetimes or ISO text), ``gw_event``, ``ra``, ``dec``,
        ``radius_arcsec``, ``include_retracted``; any may be missing or None.

    Returns
    -------
    list of DerivedAlertRecord
        At most :data:`MAX_RESULTS`, with no regard to who asks (the callers cut them to the user).
    """
    return _derived_records(parameters, DerivedAlertRecord.objects.all())


def _derived_records(parameters: Mapping[str, Any], records: QuerySet) -> list[DerivedAlertRecord]:
    records = records.filter(kind=DerivedAlertRecord.Kind.CLASSIFICATION)
    if parameters.get("score_min") is not None:
        records = records.filter(kilonova_score__gte=float(parameters["score_min"]))
    if parameters.get("score_max") is not None:
        records = records.filter(kilonova_score__lte=float(parameters["score_max"]))
    start, end = _as_datetime(parameters.get("time_start")), _as_datetime(parameters.get("time_end"))
    if parameters.get("time_field") == "latest_point":
        if start is not None:
            records = records.filter(latest_point_mjd__gte=_datetime_to_mjd(start))
        if end is not None:
            records = records.filter(latest_point_mjd__lte=_datetime_to_mjd(end))
    else:
        if start is not None:
            records = records.filter(received__gte=start)
        if end is not None:
            records = records.filter(received__lte=end)
    if parameters.get("gw_event"):
        records = records.filter(gw_event=parameters["gw_event"])
    if not parameters.get("include_retracted"):
        records = records.filter(retracted=False)
    records = records.order_by("-received", "-pk")
    if parameters.get("radius_arcsec") is not None and parameters.get("ra") is not None:
        in_cone = cone_filter(
            records, float(parameters["ra"]), float(parameters["dec"]), float(parameters["radius_arcsec"]) / 3600.0
        )
        found = sorted((record for record, _separation in in_cone), key=lambda r: (r.received, r.pk), reverse=True)
        return found[:MAX_RESULTS]
    return list(records[:MAX_RESULTS])


def derived_alert_dict(record: DerivedAlertRecord) -> dict[str, Any]:
    """A derived alert as a query page caches it: the alert as received, with the TOM's bookkeeping."""
    return {
        **record.raw,
        "record_id": record.pk,
        "target_id": record.target_id,
        "received": record.received.isoformat(),
        "retracted": record.retracted,
    }


# -- the archive query -------------------------------------------------------------------------------
@dataclass(frozen=True)
class ArchiveQuery:
    """What to look for in the archive; every filter is optional and they combine (AND).

    Parameters
    ----------
    kinds : tuple of str
        Among :data:`KINDS`; empty means all.
    name : str
        An object's name or id: a Target's name or alias, a derived alert's candidate name or alert id
        (exact, case-insensitive).
    ra, dec, radius_arcsec : float, optional
        A cone.
    time_start, time_end : datetime, optional
        Derived alerts: received; optical: a survey detection in the range; GW candidates: the event's time.
    score_min : float, optional
        The lowest kilonova score: the alert's own, or a Target's latest derived alert's.
    fink_class : str
        Fink's class of the Target: either of :data:`FINK_CLASS_KEYS` equal to it, case-insensitive.
    gw_event, credible_level : str, float
        Only Targets inside the ``credible_level`` region of this GW event's ranked sky map.
    include_retracted : bool
        Retracted derived alerts and candidates of retracted events too.
    """

    kinds: tuple[str, ...] = ()
    name: str = ""
    ra: float | None = None
    dec: float | None = None
    radius_arcsec: float | None = None
    time_start: datetime | None = None
    time_end: datetime | None = None
    score_min: float | None = None
    fink_class: str = ""
    gw_event: str = ""
    credible_level: float = 0.9
    include_retracted: bool = False

    @classmethod
    def from_parameters(cls, parameters: Mapping[str, Any]) -> ArchiveQuery:
        """The query from a form's cleaned data (JSON-safe: times as ISO text, numbers or None)."""
        kinds = tuple(k for k in (parameters.get("kinds") or ()) if k in KINDS)
        level = _float(parameters.get("credible_level"))
        return cls(
            kinds=kinds,
            name=str(parameters.get("name") or "").strip(),
            ra=_float(parameters.get("ra")),
            dec=_float(parameters.get("dec")),
            radius_arcsec=_float(parameters.get("radius_arcsec")),
            time_start=_as_datetime(parameters.get("time_start")),
            time_end=_as_datetime(parameters.get("time_end")),
            score_min=_float(parameters.get("score_min")),
            fink_class=str(parameters.get("fink_class") or "").strip(),
            gw_event=str(parameters.get("gw_event") or "").strip(),
            credible_level=0.9 if level is None else level,
            include_retracted=bool(parameters.get("include_retracted")),
        )

    @property
    def has_cone(self) -> bool:
        """Whether the query names a whole cone."""
        return None not in (self.ra, self.dec, self.radius_arcsec)


def _fink_classes(target_ids: Iterable[int]) -> dict[int, str]:
    """Fink's class of each Target that has one (:data:`FINK_CLASS_KEYS`, first found)."""
    found: dict[int, dict[str, str]] = {}
    for target_id, key, value in TargetExtra.objects.filter(
        target_id__in=list(target_ids), key__in=FINK_CLASS_KEYS
    ).values_list("target_id", "key", "value"):
        found.setdefault(target_id, {})[key] = value
    return {
        target_id: next(values[k] for k in FINK_CLASS_KEYS if values.get(k))
        for target_id, values in found.items()
        if any(values.get(k) for k in FINK_CLASS_KEYS)
    }


def _latest_score(target_field: str = "pk") -> Subquery:
    """The kilonova score of a Target's latest derived alert (not retracted), as a subquery."""
    return Subquery(
        DerivedAlertRecord.objects.filter(
            target_id=OuterRef(target_field), kind=DerivedAlertRecord.Kind.CLASSIFICATION, retracted=False
        )
        .order_by("-received", "-pk")
        .values("kilonova_score")[:1]
    )


def _latest_scores(target_ids: Iterable[int]) -> dict[int, float]:
    """The kilonova score of each Target's latest derived alert (not retracted)."""
    scores: dict[int, float] = {}
    for target_id, score in (
        DerivedAlertRecord.objects.filter(
            target_id__in=list(target_ids), kind=DerivedAlertRecord.Kind.CLASSIFICATION, retracted=False
        )
        .order_by("target_id", "-received", "-pk")
        .values_list("target_id", "kilonova_score")
    ):
        scores.setdefault(target_id, score)
    return scores


def _region_rows(query: ArchiveQuery) -> QuerySet:
    rows = EventCandidate.objects.filter(event__superevent_id=query.gw_event, credible_level__lte=query.credible_level)
    return rows if query.include_retracted else rows.filter(retracted=False)


def _allowed_targets(query: ArchiveQuery, user: Any) -> QuerySet:
    """The Targets the user may view that pass the Target-level filters (GW region, Fink class), in SQL."""
    targets = Target.objects.all() if (user.is_authenticated and user.is_superuser) else visible_targets(user)
    if query.gw_event:
        targets = targets.filter(pk__in=_region_rows(query).values("target_id"))
    if query.fink_class:
        classed = TargetExtra.objects.filter(key__in=FINK_CLASS_KEYS, value__iexact=query.fink_class)
        targets = targets.filter(pk__in=classed.values("target_id"))
    return targets


def _named(targets: QuerySet, name: str) -> QuerySet:
    aliased = TargetName.objects.filter(name__iexact=name).values("target_id")
    return targets.filter(Q(name__iexact=name) | Q(pk__in=aliased))


def _found_targets(query: ArchiveQuery, user: Any) -> QuerySet:
    """:func:`_allowed_targets` with the name and the cone: the Targets optical and GW rows may be of."""
    targets = _allowed_targets(query, user)
    if query.name:
        targets = _named(targets, query.name)
    if query.has_cone:
        in_cone = cone_filter(targets, query.ra, query.dec, query.radius_arcsec / 3600.0)
        targets = Target.objects.filter(pk__in=[t.pk for t, _separation in in_cone])
    return targets


def _target_rows(ids: Iterable[int]) -> dict[int, Target]:
    return {t.pk: t for t in Target.objects.filter(pk__in=list(ids))}


def _aliases(ids: Iterable[int]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for target_id, name in TargetName.objects.filter(target_id__in=list(ids)).values_list("target_id", "name"):
        out.setdefault(target_id, []).append(name)
    return out


def _derived_hits(query: ArchiveQuery, user: Any) -> list[dict[str, Any]]:
    allowed = _allowed_targets(query, user)
    visible = Q(target__in=allowed.values("pk"))
    may_see_orphans = (user.is_authenticated and user.is_superuser) or has_model_view_permission(
        user, DerivedAlertRecord
    )
    if may_see_orphans and not (query.gw_event or query.fink_class):
        # a Target that is gone: the admin's audience only, and no Target-level filter can hold
        visible |= Q(target__isnull=True)
    records = DerivedAlertRecord.objects.filter(visible)
    if query.name:
        by_name = Q(candidate_name__iexact=query.name) | Q(target__in=_named(Target.objects.all(), query.name))
        try:
            by_name |= Q(alert_id=uuid.UUID(query.name))
        except ValueError:
            pass
        records = records.filter(by_name)
    parameters = {
        "score_min": query.score_min,
        "time_start": query.time_start,
        "time_end": query.time_end,
        "ra": query.ra if query.has_cone else None,
        "dec": query.dec,
        "radius_arcsec": query.radius_arcsec if query.has_cone else None,
        "include_retracted": query.include_retracted,
    }
    found = _derived_records(parameters, records)
    classes = _fink_classes(r.target_id for r in found if r.target_id)
    hits = []
    for record in found:
        candidate = record.raw.get("candidate", {})
        hits.append({
            "kind": "derived",
            "kind_label": KIND_LABELS["derived"],
            "name": record.candidate_name,
            "ra": record.ra,
            "dec": record.dec,
            "time": _utc_text(record.received),
            "kilonova_score": record.kilonova_score,
            "fink_class": classes.get(record.target_id, ""),
            "gw_event": record.gw_event,
            "credible_level": None,
            "target_id": record.target_id,
            "aliases": list(candidate.get("aliases", [])),
            "alert_id": str(record.alert_id),
            "retracted": record.retracted,
            "photometry": list(record.raw.get("photometry", [])),
        })  # fmt: skip
    return hits


def _optical_points() -> QuerySet:
    # the photometry tom_mma.optical.service writes: source_name is "<broker> <survey>" or "<survey>"
    surveys = ("ZTF", "Rubin")
    where = Q(source_name__in=surveys)
    for survey in surveys:
        where |= Q(source_name__endswith=f" {survey}")
    return PhotometryReducedDatum.objects.filter(where, brightness__isnull=False)  # detections, not limits


def _optical_hits(query: ArchiveQuery, user: Any, limit: int) -> list[dict[str, Any]]:
    points = _optical_points().filter(target__in=_found_targets(query, user).values("pk"))
    if query.time_start is not None:
        points = points.filter(timestamp__gte=query.time_start)
    if query.time_end is not None:
        points = points.filter(timestamp__lte=query.time_end)
    summary = points.values("target_id").annotate(first=Min("timestamp"), last=Max("timestamp"), n=Count("id"))
    if query.score_min is not None:
        summary = summary.annotate(score=_latest_score("target_id")).filter(score__gte=query.score_min)
    rows = list(summary.order_by("-last", "-target_id")[:limit])
    ids = [row["target_id"] for row in rows]
    targets, aliases = _target_rows(ids), _aliases(ids)
    classes, scores = _fink_classes(ids), _latest_scores(ids)
    return [
        {
            "kind": "optical",
            "kind_label": KIND_LABELS["optical"],
            "name": targets[row["target_id"]].name,
            "ra": targets[row["target_id"]].ra,
            "dec": targets[row["target_id"]].dec,
            "time": _utc_text(row["last"]),
            "first_point": _utc_text(row["first"]),
            "points": row["n"],
            "kilonova_score": scores.get(row["target_id"]),
            "fink_class": classes.get(row["target_id"], ""),
            "gw_event": "",
            "credible_level": None,
            "target_id": row["target_id"],
            "aliases": aliases.get(row["target_id"], []),
        }
        for row in rows
        if row["target_id"] in targets
    ]


def _gw_hits(query: ArchiveQuery, user: Any, limit: int) -> list[dict[str, Any]]:
    rows = EventCandidate.objects.select_related("event").filter(target__in=_found_targets(query, user).values("pk"))
    if query.gw_event:
        rows = rows.filter(event__superevent_id=query.gw_event, credible_level__lte=query.credible_level)
    if not query.include_retracted:
        rows = rows.filter(retracted=False)
    if query.time_start is not None:
        rows = rows.filter(event__event_time__gte=query.time_start)
    if query.time_end is not None:
        rows = rows.filter(event__event_time__lte=query.time_end)
    if query.score_min is not None:
        rows = rows.annotate(score=_latest_score("target_id")).filter(score__gte=query.score_min)
    kept = list(rows.order_by("credible_level", "pk")[:limit])
    ids = {r.target_id for r in kept}
    targets, aliases = _target_rows(ids), _aliases(ids)
    classes, scores = _fink_classes(ids), _latest_scores(ids)
    return [
        {
            "kind": "gw",
            "kind_label": KIND_LABELS["gw"],
            "name": targets[r.target_id].name,
            "ra": targets[r.target_id].ra,
            "dec": targets[r.target_id].dec,
            "time": _utc_text(r.event.event_time),
            "kilonova_score": scores.get(r.target_id),
            "fink_class": classes.get(r.target_id, ""),
            "gw_event": r.event.superevent_id,
            "credible_level": r.credible_level,
            "target_id": r.target_id,
            "aliases": aliases.get(r.target_id, []),
            "retracted": r.retracted,
        }
        for r in kept
        if r.target_id in targets
    ]


def search_archive(query: ArchiveQuery, user: Any) -> list[dict[str, Any]]:
    """The stored alerts matching ``query`` that ``user`` may see: derived, then optical, then GW candidates.

    Parameters
    ----------
    query : ArchiveQuery
        The filters.
    user
        The requesting user: results are cut to the Targets they may view (:mod:`tom_mma.visibility`).

    Returns
    -------
    list of dict
        One dict per hit, plain data: ``kind`` (``derived``, ``optical``, ``gw``) and its ``kind_label``,
        ``name``, ``ra``, ``dec``, ``time`` (UTC, ``YYYY-MM-DD HH:MM:SS``), ``kilonova_score``, ``fink_class``,
        ``gw_event``, ``credible_level``, ``target_id``, ``aliases``, and per kind ``alert_id``, ``retracted``,
        ``photometry`` (derived), ``points``, ``first_point`` (optical), ``retracted`` (GW). At most
        :data:`MAX_RESULTS` in all.
    """
    if not user.is_authenticated:
        return []
    kinds = query.kinds or tuple(KINDS)
    hits: list[dict[str, Any]] = []
    if "derived" in kinds:
        hits += _derived_hits(query, user)
    if "optical" in kinds and len(hits) < MAX_RESULTS:
        hits += _optical_hits(query, user, MAX_RESULTS - len(hits))
    if "gw" in kinds and len(hits) < MAX_RESULTS:
        hits += _gw_hits(query, user, MAX_RESULTS - len(hits))
    return hits[:MAX_RESULTS]
