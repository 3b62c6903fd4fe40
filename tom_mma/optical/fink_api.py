"""Fink's REST API for ZTF: ask it for alerts, and turn its rows into :class:`~tom_mma.optical.alerts.OpticalAlert`.

The endpoints and columns are those of Fink's public API (``https://api.ztf.fink-portal.org``, the default
of ``TOM_MMA['FINK_API_URL']``), as tom_fink and fink-client call it: a ``POST`` of a JSON body to

============================  =====================================================================
``/api/v1/objects``           an object's alerts: ``objectId``, ``withupperlim``
``/api/v1/conesearch``        objects in a cone: ``ra``, ``dec`` (degrees), ``radius`` (arcsec, at most
                              18,000), optionally ``startdate``/``stopdate`` (first detection)
``/api/v1/latests``           the latest alerts of a Fink class: ``class``, ``n``, ``startdate``,
                              ``stopdate`` (UTC, ISO)
``/api/v1/sso``               a solar-system object's alerts: ``n_or_d`` (IAU number or designation)
============================  =====================================================================

answered with a JSON list of rows, ``{column: value}``, one per alert, columns prefixed by family:
``i:`` the ZTF candidate (``i:objectId``, ``i:candid``, ``i:ra``, ``i:dec``, ``i:jd``, ``i:fid``,
``i:magpsf``, ``i:sigmapsf``, ``i:diffmaglim``, ``i:ssnamenr``), ``d:`` Fink's science modules
(``d:cdsxmatch``, ``d:rf_snia_vs_nonia``, ``d:roid``, ... and ``d:tag``, ``valid``/``upperlim``/
``badquality``, with ``withupperlim``), ``v:`` values Fink derives (``v:classification``).

Fink's Rubin API (``https://api.lsst.fink-portal.org``, named by fink-client) speaks other columns
(``r:diaObjectId``, ``r:midpointMjdTai``, fluxes): it is not read here.

Every failure of the remote service (no answer within ``TOM_MMA['FINK_API_TIMEOUT_S']``, an HTTP error,
a body that is not the documented JSON) raises :class:`FinkApiError` with a message for a person.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import requests

from tom_mma.conf import mma_settings

from .alerts import OpticalAlert, OpticalPoint
from .alerts import finite_number as _num

__all__ = ["FinkApiError", "FinkQuery", "QUERY_KINDS", "request_for", "query_fink", "alerts_from_rows"]

logger = logging.getLogger(__name__)

#: The searches Fink's API offers, as the query form names them.
QUERY_KINDS = {
    "object": "ZTF object id",
    "cone": "Cone search",
    "class": "Latest alerts of a class",
    "sso": "Solar-system object",
}

#: The largest cone Fink's API searches (arcsec).
MAX_RADIUS_ARCSEC = 18000.0

_JD_MJD = 2400000.5
_ZTF_BANDS = {1: "ztfg", 2: "ztfr", 3: "ztfi"}
_BODY_EXCERPT = 200


class FinkApiError(Exception):
    """Fink's API did not give an answer that can be read (its message is fit for a person)."""


@dataclass(frozen=True)
class FinkQuery:
    """One search of Fink's API.

    Parameters
    ----------
    kind : str
        One of :data:`QUERY_KINDS`.
    object_id : str
        ``object``: the ZTF object id.
    ra, dec, radius_arcsec : float, optional
        ``cone``: the cone (degrees, arcsec).
    fink_class : str
        ``class``: a Fink class, e.g. ``"Early SN Ia candidate"`` or ``"(SIMBAD) RRLyr"``.
    n : int
        ``class`` and ``cone``: the most alerts Fink returns.
    startdate, stopdate : str
        ``class`` and ``cone``: a date range (UTC, ISO text); empty for Fink's defaults.
    sso : str
        ``sso``: an IAU number or designation.
    """

    kind: str
    object_id: str = ""
    ra: float | None = None
    dec: float | None = None
    radius_arcsec: float | None = None
    fink_class: str = ""
    n: int = 100
    startdate: str = ""
    stopdate: str = ""
    sso: str = ""


def request_for(query: FinkQuery) -> tuple[str, dict[str, Any]]:
    """The endpoint (relative to the API's URL) and the JSON body of a query.

    Examples
    --------
    >>> request_for(FinkQuery(kind="object", object_id="ZTF18abvcdqu"))
    ('/api/v1/objects', {'objectId': 'ZTF18abvcdqu', 'withupperlim': True, 'output-format': 'json'})
    >>> request_for(FinkQuery(kind="class", fink_class="Kilonova candidate", n=5))
    ('/api/v1/latests', {'class': 'Kilonova candidate', 'n': 5, 'output-format': 'json'})
    """
    if query.kind == "object":
        path, body = "/api/v1/objects", {"objectId": query.object_id, "withupperlim": True}
    elif query.kind == "cone":
        path, body = "/api/v1/conesearch", {"ra": query.ra, "dec": query.dec, "radius": query.radius_arcsec}
        body["n"] = query.n
    elif query.kind == "class":
        path, body = "/api/v1/latests", {"class": query.fink_class, "n": query.n}
    elif query.kind == "sso":
        path, body = "/api/v1/sso", {"n_or_d": query.sso}
    else:
        raise ValueError(f"unknown Fink query kind {query.kind!r}")
    if query.kind in ("cone", "class"):
        if query.startdate:
            body["startdate"] = query.startdate
        if query.stopdate:
            body["stopdate"] = query.stopdate
    body["output-format"] = "json"
    return path, body


def _excerpt(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _BODY_EXCERPT else text[:_BODY_EXCERPT] + "..."


def query_fink(
    query: FinkQuery, base_url: str | None = None, timeout: float | None = None, session: Any = None
) -> list[dict[str, Any]]:
    """Ask Fink's API; return its rows (one dict per alert).

    Parameters
    ----------
    query : FinkQuery
        The search.
    base_url : str, optional
        The API's URL (default ``TOM_MMA['FINK_API_URL']``).
    timeout : float, optional
        Seconds to wait for the connection and for each read (default ``TOM_MMA['FINK_API_TIMEOUT_S']``).
    session : requests.Session, optional
        The session to send with (default: a plain ``requests.post``).

    Raises
    ------
    FinkApiError
        No answer in time, no connection, an HTTP error status, or a body that is not a JSON list of rows.
    """
    base = str(base_url or mma_settings.FINK_API_URL).rstrip("/")
    wait = float(mma_settings.FINK_API_TIMEOUT_S if timeout is None else timeout)
    path, body = request_for(query)
    url = base + path
    post = session.post if session is not None else requests.post
    try:
        response = post(url, json=body, timeout=wait)
    except requests.Timeout:
        raise FinkApiError(f"Fink's API ({base}) did not answer within {wait:g} s; try again later.") from None
    except requests.RequestException as exc:
        raise FinkApiError(f"Fink's API ({base}) could not be reached: {type(exc).__name__}.") from None
    if response.status_code >= 500:
        raise FinkApiError(
            f"Fink's API ({base}) failed with HTTP {response.status_code}; try again later. "
            f"It said: {_excerpt(response.text)}"
        )
    if response.status_code >= 400:
        raise FinkApiError(
            f"Fink's API ({base}) refused the query (HTTP {response.status_code}): {_excerpt(response.text)}"
        )
    try:
        rows = response.json()
    except ValueError:
        raise FinkApiError(
            f"Fink's API ({base}) answered with something that is not JSON: {_excerpt(response.text)}"
        ) from None
    if not isinstance(rows, list) or not all(isinstance(row, Mapping) for row in rows):
        raise FinkApiError(f"Fink's API ({base}) answered with JSON that is not a list of rows.")
    logger.info("Fink API %s %s: %d rows", path, {k: v for k, v in body.items() if k != "output-format"}, len(rows))
    return [dict(row) for row in rows]


def _point(row: Mapping[str, Any], kind: str) -> OpticalPoint | None:
    jd, fid = _num(row.get("i:jd")), row.get("i:fid")
    try:
        band = _ZTF_BANDS[int(fid)]
    except (KeyError, TypeError, ValueError, OverflowError):
        return None
    if jd is None:
        return None
    tag = row.get("d:tag", "valid")
    magnitude = _num(row.get("i:magpsf"))
    if tag in (None, "valid") and magnitude is not None:
        return OpticalPoint(
            mjd=jd - _JD_MJD, band=band, kind=kind, magnitude=magnitude, magnitude_error=_num(row.get("i:sigmapsf"))
        )
    limit = _num(row.get("i:diffmaglim"))
    if tag == "upperlim" and limit is not None:
        return OpticalPoint(mjd=jd - _JD_MJD, band=band, kind="nondetection", limit=limit)
    return None  # bad quality, or nothing measured


def _is_detection(row: Mapping[str, Any]) -> bool:
    return row.get("d:tag", "valid") in (None, "valid") and _num(row.get("i:magpsf")) is not None


def alerts_from_rows(rows: Sequence[Mapping[str, Any]]) -> list[OpticalAlert]:
    """One :class:`OpticalAlert` per object in Fink's rows, newest object first.

    Each object's latest detection gives the alert (id ``i:candid``, position, time, Fink's scores and
    cross-matches: numeric ``d:`` columns as scores, text ones and ``v:classification`` as
    cross-matches, without their prefix, as the livestream names them); its other rows are its earlier
    detections and, with ``d:tag`` ``upperlim``, its limits.

    Raises
    ------
    FinkApiError
        A row without ``i:objectId``, or an object without a detection that has a position and a time.
    """
    by_object: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        object_id = row.get("i:objectId")
        if not isinstance(object_id, str) or not object_id:
            raise FinkApiError("Fink's API answered with a row that has no i:objectId (not a ZTF alert).")
        by_object.setdefault(object_id, []).append(row)
    alerts = []
    for object_id, object_rows in by_object.items():
        detections = [r for r in object_rows if _is_detection(r) and _num(r.get("i:jd")) is not None]
        latest = max(detections, key=lambda r: _num(r["i:jd"]), default=None)
        if latest is None or _num(latest.get("i:ra")) is None or _num(latest.get("i:dec")) is None:
            raise FinkApiError(f"Fink's API gave no detection with a position and a time for {object_id}.")
        points = []
        for row in object_rows:
            point = _point(row, "detection" if row is latest else "previous")
            if point is not None:
                points.append(point)
        scores: dict[str, float | None] = {}
        crossmatches: dict[str, Any] = {}
        for column, value in latest.items():
            family, _, key = column.partition(":")
            if family not in ("d", "v") or key in ("tag", "") or value is None:
                continue
            if isinstance(value, str):
                crossmatches[key] = value
            elif isinstance(value, int | float) and family == "d":
                scores[key] = _num(value)
        alerts.append(
            OpticalAlert(
                survey="ZTF", object_id=object_id, name=object_id, alert_id=str(latest.get("i:candid") or ""),
                ra=float(latest["i:ra"]) % 360.0, dec=float(latest["i:dec"]), mjd=_num(latest["i:jd"]) - _JD_MJD,
                points=tuple(points), scores=tuple(sorted(scores.items())),
                crossmatches=tuple(sorted(crossmatches.items())), broker="Fink",
            )
        )  # fmt: skip
    alerts.sort(key=lambda a: (a.mjd, a.object_id), reverse=True)
    return alerts
