"""Ranking Targets against GW sky maps: where each Target lies in each active event's current map.

:func:`rank_event` ranks every Target against an event's current sky map; :func:`rank_targets` ranks some Targets
against every active event (new Targets arrive through :mod:`tom_mma.receivers`); :func:`candidates` lists an
event's candidates, most probable first; :func:`credible_level` answers "where is this position in the
event's sky map" for other code (the observation rules). Candidates are upserted with one statement per
batch (hand-written SQL: the ORM's upsert spends ~1 s compiling 10,000 rows).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.db import connection, transaction
from django.utils import timezone

from tom_mma.models import EventCandidate, EventSkyMap, GWEvent

from .skymap_store import load_skymap

__all__ = [
    "EventPosition",
    "candidates",
    "credible_level",
    "event_position",
    "lagging_events",
    "rank_event",
    "rank_targets",
]

logger = logging.getLogger(__name__)


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
    with transaction.atomic():
        locked = GWEvent.objects.select_for_update().only("state", "skymap").get(pk=event.pk)
        if locked.state != GWEvent.State.ACTIVE or locked.skymap_id != version.pk:
            return 0  # retracted, or a newer map arrived meanwhile (its own ranking follows)
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                # one statement: the per-row columns as one array literal each (no per-element parameter to
                # adapt: psycopg's list dumper quotes every element, a third of the whole notice's time for
                # 10,000 Targets), the values common to every row once
                per_row = {"target": pks, "probdensity": ranking.probdensity, "credible_level": ranking.credible_level,
                           "distance_mean": mean, "distance_std": std}  # fmt: skip
                common = {"event": event.pk, "skymap": version.pk, "retracted": False, "ranked_at": stamp}
                cursor.execute(_upsert_sql_unnest(), _unnest_params(per_row, common))
            else:
                values = [
                    (event.pk, pk, version.pk, float(p), float(c), _none_if_nan(m), _none_if_nan(s), False, stamp)
                    for pk, p, c, m, s in zip(pks, ranking.probdensity, ranking.credible_level, mean, std, strict=True)
                ]
                for start in range(0, len(values), _UPSERT_BATCH):
                    batch = values[start : start + _UPSERT_BATCH]
                    cursor.execute(_upsert_sql(len(batch)), [v for row in batch for v in row])
    return len(pks)


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


_PER_ROW = ("target", "probdensity", "credible_level", "distance_mean", "distance_std")


def _upsert_sql_unnest() -> str:
    """The PostgreSQL form of :func:`_upsert_sql`: ``INSERT ... SELECT`` the common values and ``unnest(arrays)``.

    The parameters are those of :func:`_unnest_params`: the values common to every row (in the ``SELECT``
    list), then the per-row columns' array literals (in ``unnest``).
    """
    arrays = ", ".join(f"%s::{_PG_TYPES[name]}[]" for name in _PER_ROW)
    selected = ", ".join(f"u.{name}" if name in _PER_ROW else f"%s::{_PG_TYPES[name]}" for name in _CANDIDATE_FIELDS)
    return _upsert(f"SELECT {selected} FROM unnest({arrays}) AS u({', '.join(_PER_ROW)})")


def _array_literal(values: Iterable[Any]) -> str:
    """A PostgreSQL array literal of numbers, ``NULL`` for None and NaN (``repr``: exact, shortest digits).

    >>> _array_literal([1, 2.5, None, float("nan")])
    '{1,2.5,NULL,NULL}'
    """
    return "{" + ",".join(map(_number_literal, values)) + "}"


def _number_literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    number = float(value)
    return "NULL" if math.isnan(number) else repr(number)


def _unnest_params(per_row: dict[str, Any], common: dict[str, Any]) -> list[Any]:
    """The parameters of :func:`_upsert_sql_unnest`, in the order of its text: the common values, then the arrays."""
    return [common[name] for name in _CANDIDATE_FIELDS if name not in _PER_ROW] + [
        _array_literal(per_row[name]) for name in _PER_ROW
    ]


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
    GWEvent.objects.filter(pk=event.pk, skymap=event.skymap).update(ranked_skymap=event.skymap)
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


def lagging_events(settle_s: float = 300.0) -> tuple[list[int], list[str]]:
    """Active events whose current sky map is older than ``settle_s`` and not yet ranked / evaluated.

    What the sweep sends again: a ranking or a rule evaluation whose task was lost (its send failed, or its
    queue). Recent maps are left to their own tasks.

    Returns
    -------
    (list of int, list of str)
        Primary keys of events to rank, superevent ids of events whose rules to evaluate.
    """
    from django.db.models import F

    settled = timezone.now() - dt.timedelta(seconds=settle_s)
    active = GWEvent.objects.filter(state=GWEvent.State.ACTIVE, skymap__isnull=False, modified__lt=settled)
    unranked = active.exclude(ranked_skymap=F("skymap")).values_list("pk", flat=True)
    unevaluated = active.exclude(rules_skymap=F("skymap")).values_list("superevent_id", flat=True)
    return list(unranked), list(unevaluated)


def candidates(event: GWEvent):
    """The event's candidates, most probable first (credible level, then probability density)."""
    return (
        EventCandidate.objects.filter(event=event)
        .select_related("target")
        .order_by("credible_level", "-probdensity", "target_id")
    )


@dataclass(frozen=True)
class EventPosition:
    """Where a position lies in an active GW event: what the kilonova classifier takes as GW context.

    Attributes
    ----------
    event_time : datetime
        The merger time.
    credible_level : float or None
        Of the position in the current sky map (None without a sky map).
    distance_mpc : float or None
        The conditional distance at the position, else the map's mean distance (None without distance).
    """

    event_time: dt.datetime
    credible_level: float | None
    distance_mpc: float | None


def event_position(superevent_id: str, ra: float, dec: float) -> EventPosition | None:
    """A position in an active event (the documented way for other apps to ask; the broker's classifier does).

    Returns
    -------
    EventPosition or None
        None when the event is unknown, retracted, or has no merger time.
    """
    event = (
        GWEvent.objects.filter(superevent_id=superevent_id, state=GWEvent.State.ACTIVE)
        .select_related("skymap")
        .defer("skymap__fits")
        .first()
    )
    if event is None or event.event_time is None:
        return None
    level = distance = None
    if event.skymap is not None:
        ranking = load_skymap(event.skymap).rank(np.array([ra]), np.array([dec]))
        level = float(ranking.credible_level[0])
        if ranking.distance_mean is not None and math.isfinite(float(ranking.distance_mean[0])):
            distance = float(ranking.distance_mean[0])
        elif event.skymap.distance_mean:
            distance = float(event.skymap.distance_mean)
    return EventPosition(event_time=event.event_time, credible_level=level, distance_mpc=distance)


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
