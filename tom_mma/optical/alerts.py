"""One normaliser for optical alerts: ZTF, Rubin and Fink records into frozen :class:`OpticalAlert` objects.

The records come from :mod:`tom_mma.optical.packets` (or from a stream that already decoded the Avro).
What is read from each survey:

* **ZTF** (schemas 3.x and 4.x, raw or as Fink redistributes them): ``objectId``; the ``candidate``
  and the ``prv_candidates`` with a ``magpsf`` are detections, those without are non-detections
  with their ``diffmaglim``; 4.x ``fp_hists`` are forced photometry (difference flux in DN with its
  zero point; a detection at a signal-to-noise of :data:`FORCED_SNR` or more, else a limit at that
  many sigma). Bands ``ztfg``, ``ztfr``, ``ztfi`` (``fid`` 1, 2, 3). Times from ``jd``.
* **Rubin** (``lsst.v10_0`` and later, raw or Fink's data-transfer form): ``diaObject.diaObjectId``
  (a Target named ``LSST-<id>``); ``diaSource`` and ``prvDiaSources`` are detections when their PSF
  flux is positive, ``prvDiaForcedSources`` forced photometry; fluxes in nJy become AB magnitudes
  (``31.4 - 2.5 log10(flux)``), a measurement under :data:`FORCED_SNR` sigma a limit. Bands
  ``lsstu`` ... ``lssty``. Times are ``midpointMjdTai`` turned into UTC (TAI - UTC = 37 s since 2017).
* **Fink** (either survey): its classifier scores (numbers) and cross-matches (text) kept with the
  alert: top-level columns of the ZTF forms, ``clf``/``pred`` and ``xm`` of the Rubin forms.

All magnitudes are AB. A record that lacks what an alert needs raises
:class:`~tom_mma.optical.packets.AlertFormatError`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .packets import AlertFormatError, check_cutout

__all__ = ["OpticalPoint", "Cutout", "OpticalAlert", "normalise", "from_ztf", "from_rubin", "FORCED_SNR"]

#: signal-to-noise under which a measured flux is kept as a limit (at this many sigma)
FORCED_SNR = 5.0
_JD_MJD = 2400000.5
_TAI_UTC_DAYS = 37.0 / 86400.0
_ZTF_BANDS = {1: "ztfg", 2: "ztfr", 3: "ztfi"}
_NJY_AB_ZP = 31.4  # AB magnitude of 1 nJy: -2.5 log10(1e-9 / 3631)
_MAG_ERR = 2.5 / math.log(10.0)

_ZTF_CORE = {
    "schemavsn", "publisher", "objectId", "candid", "candidate", "prv_candidates", "fp_hists",
    "cutoutScience", "cutoutTemplate", "cutoutDifference",
}  # fmt: skip
_FINK_BOOKKEEPING = {
    "timestamp", "topic", "brokerIngestTimestamp", "brokerIngestMjd", "brokerStartProcessTimestamp",
    "brokerEndProcessTimestamp", "fink_broker_version", "fink_science_version", "year", "month", "day",
    "lsst_schema_version", "publisher", "observation_reason", "target_name", "diaSourceId",
}  # fmt: skip


class OpticalPoint(NamedTuple):
    """One photometric point of an alert: a detection (``magnitude``) or a non-detection (``limit``).

    ``kind`` is ``detection`` (the alert's own source), ``previous`` (an earlier source),
    ``forced`` (forced photometry) or ``nondetection`` (an earlier limit). ``system`` is ``AB``.
    Immutable; a named tuple rather than a frozen dataclass, since a Rubin alert makes hundreds and a
    frozen dataclass's ``__init__`` was a third of normalising one.
    """

    mjd: float
    band: str
    kind: str
    magnitude: float | None = None
    magnitude_error: float | None = None
    limit: float | None = None
    flux: float | None = None
    flux_error: float | None = None
    system: str = "AB"

    @property
    def is_limit(self) -> bool:
        """Whether the point is a non-detection (its limit, no magnitude)."""
        return self.magnitude is None


@dataclass(frozen=True)
class Cutout:
    """One image stamp of an alert: ``kind`` is ``science``, ``template`` or ``difference``."""

    kind: str
    data: bytes = field(repr=False)
    filename: str


@dataclass(frozen=True)
class OpticalAlert:
    """One optical alert, whatever its survey, packet or broker.

    ``object_id`` is the survey's object id (ZTF ``objectId``; Rubin ``diaObjectId``), ``name`` the
    Target name made of it, ``alert_id`` the id of this alert (ZTF ``candid``, Rubin ``diaSourceId``).
    ``scores`` and ``crossmatches`` are Fink's (empty for raw packets), as sorted (key, value) tuples.
    """

    survey: str
    object_id: str
    name: str
    alert_id: str
    ra: float
    dec: float
    mjd: float
    points: tuple[OpticalPoint, ...] = ()
    cutouts: tuple[Cutout, ...] = ()
    scores: tuple[tuple[str, float | None], ...] = ()
    crossmatches: tuple[tuple[str, str | float | None], ...] = ()
    broker: str = ""
    schema_version: str = ""
    aliases: tuple[str, ...] = ()

    @property
    def telescope(self) -> str:
        """The survey's telescope, as photometry names it."""
        return "ZTF" if self.survey == "ZTF" else "Rubin"

    @property
    def detections(self) -> tuple[OpticalPoint, ...]:
        """The points that are detections."""
        return tuple(p for p in self.points if not p.is_limit)


def finite_number(value: Any) -> float | None:
    """``value`` as a finite float, or None (missing, not a number, a bool, NaN or infinite).

    >>> finite_number("18.5"), finite_number(float("nan")), finite_number(True), finite_number(None)
    (18.5, None, None, None)
    """
    if value is None or isinstance(value, bool):
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


_num = finite_number


def _require(record: Mapping, key: str, what: str) -> Any:
    value = record.get(key) if isinstance(record, Mapping) else None
    if value is None:
        raise AlertFormatError(f"{what}: no {key!r}")
    return value


def _mapping(record: Mapping, key: str, what: str) -> Mapping:
    """``record[key]`` when it is a record, ``{}`` when absent or null; a bad alert otherwise (a list, a number)."""
    value = record.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise AlertFormatError(f"{what}: {key!r} is not a record but {type(value).__name__}")
    return value


def _rows(record: Mapping, key: str, what: str) -> list[Mapping]:
    """``record[key]`` when it is a list of records, ``[]`` when absent or null; a bad alert otherwise."""
    value = record.get(key)
    if value is None:
        return []
    if not isinstance(value, list | tuple) or not all(isinstance(row, Mapping) for row in value):
        raise AlertFormatError(f"{what}: {key!r} is not a list of records")
    return list(value)


def _position(ra: Any, dec: Any, what: str) -> tuple[float, float]:
    ra_f, dec_f = _num(ra), _num(dec)
    if ra_f is None or dec_f is None or not (-90.0 <= dec_f <= 90.0):
        raise AlertFormatError(f"{what}: no valid position (ra={ra!r}, dec={dec!r})")
    return ra_f % 360.0, dec_f


def _flux_point(mjd: float, band: str, kind: str, flux: Any, error: Any, zero_point: float) -> OpticalPoint | None:
    flux_f, err_f = _num(flux), _num(error)
    if err_f is None or err_f <= 0:
        return None
    if flux_f is not None and flux_f > 0 and flux_f >= FORCED_SNR * err_f:
        return OpticalPoint(
            mjd=mjd, band=band, kind=kind, magnitude=zero_point - 2.5 * math.log10(flux_f),
            magnitude_error=_MAG_ERR * err_f / flux_f, flux=flux_f, flux_error=err_f,
        )  # fmt: skip
    return OpticalPoint(
        mjd=mjd, band=band, kind="nondetection" if kind != "forced" else "forced",
        limit=zero_point - 2.5 * math.log10(FORCED_SNR * err_f), flux=flux_f, flux_error=err_f,
    )  # fmt: skip


def _cutouts(pairs: list[tuple[str, Any, str]]) -> tuple[Cutout, ...]:
    out = []
    for kind, data, filename in pairs:
        if data is None:
            continue
        if not isinstance(data, bytes | bytearray) or not data:
            raise AlertFormatError(f"corrupt {kind} cutout: empty or not bytes")
        check_cutout(data, kind)
        out.append(Cutout(kind=kind, data=bytes(data), filename=filename))
    return tuple(out)


def _fink_extras(items: Mapping[str, Any]) -> tuple[dict[str, float | None], dict[str, Any]]:
    scores: dict[str, float | None] = {}
    crossmatches: dict[str, Any] = {}
    for key, value in items.items():
        if isinstance(value, bool):
            scores[key] = float(value)
        elif isinstance(value, int | float):
            scores[key] = _num(value)
        elif isinstance(value, str):
            crossmatches[key] = value
    return scores, crossmatches


# -- ZTF ---------------------------------------------------------------------------------------------
def _ztf_band(fid: Any, what: str) -> str:
    try:
        return _ZTF_BANDS[int(fid)]
    except (KeyError, TypeError, ValueError, OverflowError):  # int(inf) overflows
        raise AlertFormatError(f"{what}: unknown ZTF filter id {fid!r}") from None


def _ztf_point(row: Mapping, kind: str) -> OpticalPoint | None:
    jd = _num(row.get("jd"))
    if jd is None:
        return None
    band = _ztf_band(row.get("fid"), "ZTF source")
    mag = _num(row.get("magpsf"))
    if mag is not None:
        return OpticalPoint(
            mjd=jd - _JD_MJD, band=band, kind=kind, magnitude=mag, magnitude_error=_num(row.get("sigmapsf"))
        )
    limit = _num(row.get("diffmaglim"))
    if limit is None:
        return None
    return OpticalPoint(mjd=jd - _JD_MJD, band=band, kind="nondetection", limit=limit)


def _ztf_forced(row: Mapping) -> OpticalPoint | None:
    # ZTF 4.x forced photometry: difference flux in DN; -99999 marks no measurement; procstatus "0" is good
    status = str(row.get("procstatus") or "0").strip()
    jd, zero_point = _num(row.get("jd")), _num(row.get("magzpsci"))
    flux, error = _num(row.get("forcediffimflux")), _num(row.get("forcediffimfluxunc"))
    if status not in ("0", "") or jd is None or zero_point is None or flux is None or flux <= -99999 or error is None:
        return None
    return _flux_point(
        jd - _JD_MJD, _ztf_band(row.get("fid"), "ZTF forced photometry"), "forced", flux, error, zero_point
    )


def from_ztf(record: Mapping[str, Any]) -> OpticalAlert:
    """Normalise a ZTF alert record (raw 3.x/4.x, Fink's livestream or Fink's data-transfer form)."""
    object_id = str(_require(record, "objectId", "ZTF alert"))
    what = f"ZTF alert {object_id}"
    candidate = _require(record, "candidate", what)
    if not isinstance(candidate, Mapping):
        raise AlertFormatError(f"{what}: 'candidate' is not a record")
    ra, dec = _position(candidate.get("ra"), candidate.get("dec"), what)
    jd = _num(candidate.get("jd"))
    if jd is None:
        raise AlertFormatError(f"{what}: the candidate has no time (jd)")
    points = []
    first = _ztf_point(candidate, "detection")
    if first is not None:
        points.append(first)
    for row in _rows(record, "prv_candidates", what):
        point = _ztf_point(row, "previous")
        if point is not None:
            points.append(point)
    for row in _rows(record, "fp_hists", what):
        point = _ztf_forced(row)
        if point is not None:
            points.append(point)
    stamps = {kind: _mapping(record, f"cutout{kind.title()}", what) for kind in ("science", "template", "difference")}
    cutouts = _cutouts([
        (kind, stamp.get("stampData"), str(stamp.get("fileName") or f"{kind}.fits.gz"))
        for kind, stamp in stamps.items()
    ])  # fmt: skip
    extras = {k: v for k, v in record.items() if k not in _ZTF_CORE and k not in _FINK_BOOKKEEPING}
    scores, crossmatches = _fink_extras(extras)
    is_fink = record.get("publisher") == "Fink" or "fink_broker_version" in record or bool(extras)
    return OpticalAlert(
        survey="ZTF", object_id=object_id, name=object_id,
        alert_id=str(record.get("candid") or candidate.get("candid")),
        ra=ra, dec=dec, mjd=jd - _JD_MJD, points=tuple(points), cutouts=cutouts,
        scores=tuple(sorted(scores.items())), crossmatches=tuple(sorted(crossmatches.items())),
        broker="Fink" if is_fink else "", schema_version=str(record.get("schemavsn") or ""),
    )  # fmt: skip


# -- Rubin -------------------------------------------------------------------------------------------
def _rubin_band(row: Mapping) -> str | None:
    band = row.get("band") or row.get("filterName")
    return f"lsst{band}" if isinstance(band, str) and band else None


def _rubin_points(rows: list[Mapping], kind: str) -> list[OpticalPoint]:
    points = []
    for row in rows:
        mjd_tai, band = _num(row.get("midpointMjdTai")), _rubin_band(row)
        if mjd_tai is None or band is None:
            continue
        point = _flux_point(mjd_tai - _TAI_UTC_DAYS, band, kind, row.get("psfFlux"), row.get("psfFluxErr"), _NJY_AB_ZP)
        if point is not None:
            points.append(point)
    return points


def from_rubin(record: Mapping[str, Any]) -> OpticalAlert:
    """Normalise a Rubin alert record (``lsst.v10_0`` and later, raw or Fink's data-transfer form)."""
    source = record.get("diaSource") if isinstance(record, Mapping) else None
    if not isinstance(source, Mapping):
        raise AlertFormatError("Rubin alert: no 'diaSource' record")
    source_id = source.get("diaSourceId") or record.get("diaSourceId")
    what = f"Rubin alert {source_id}"
    dia_object = _mapping(record, "diaObject", what)
    object_id = dia_object.get("diaObjectId") or source.get("diaObjectId")
    if object_id:
        name = f"LSST-{object_id}"
    else:  # a solar-system source: no diaObject, named by its designation (as fink-client does)
        designation = _mapping(record, "mpc_orbits", what).get("designation") or source.get("ssObjectId")
        if not designation:
            raise AlertFormatError(f"{what}: neither a diaObjectId nor a solar-system designation")
        object_id, name = designation, f"LSST-SSO-{designation}"
    if dia_object.get("ra") is not None and dia_object.get("dec") is not None:
        ra, dec = _position(dia_object["ra"], dia_object["dec"], what)
    else:  # a new object's first source: Fink's form may carry an empty diaObject
        ra, dec = _position(source.get("ra"), source.get("dec"), what)
    mjd_tai = _num(source.get("midpointMjdTai"))
    if mjd_tai is None:
        raise AlertFormatError(f"{what}: the diaSource has no time (midpointMjdTai)")
    points = _rubin_points([source], "detection") + _rubin_points(_rows(record, "prvDiaSources", what), "previous")
    points += _rubin_points(_rows(record, "prvDiaForcedSources", what), "forced")
    cutouts = _cutouts([
        (kind, record.get(f"cutout{kind.title()}"), f"{source_id}_{kind}.fits")
        for kind in ("science", "template", "difference")
    ])  # fmt: skip
    scores: dict[str, float | None] = {}
    crossmatches: dict[str, Any] = {}
    for group in ("clf", "pred"):
        s, c = _fink_extras(_mapping(record, group, what))
        scores.update(s)
        crossmatches.update(c)
    for key, value in _mapping(record, "xm", what).items():
        crossmatches[key] = _num(value) if isinstance(value, int | float) and not isinstance(value, bool) else value
    for key in ("tns_type_recomputed",):
        if isinstance(record.get(key), str):
            crossmatches[key] = record[key]
    is_fink = record.get("publisher") == "Fink" or "fink_broker_version" in record
    return OpticalAlert(
        survey="LSST", object_id=str(object_id), name=name, alert_id=str(source_id), ra=ra, dec=dec,
        mjd=mjd_tai - _TAI_UTC_DAYS, points=tuple(points), cutouts=cutouts,
        scores=tuple(sorted(scores.items())),
        crossmatches=tuple(sorted((k, v) for k, v in crossmatches.items() if v is not None)),
        broker="Fink" if is_fink else "", schema_version=str(record.get("lsst_schema_version") or ""),
    )  # fmt: skip


def normalise(record: Mapping[str, Any], schema_version: str = "") -> OpticalAlert:
    """The :class:`OpticalAlert` of a ZTF or Rubin record (raw or Fink's), told apart by its fields.

    Raises
    ------
    AlertFormatError
        If the record is neither, or lacks what an alert needs.
    """
    if not isinstance(record, Mapping):
        raise AlertFormatError(f"an optical alert is a record, not {type(record).__name__}")
    if "objectId" in record and "candidate" in record:
        return from_ztf(record)
    if "diaSource" in record:
        alert = from_rubin(record)
        if schema_version and not alert.schema_version:
            alert = OpticalAlert(**{**alert.__dict__, "schema_version": schema_version})
        return alert
    raise AlertFormatError("neither a ZTF alert (objectId, candidate) nor a Rubin alert (diaSource)")
