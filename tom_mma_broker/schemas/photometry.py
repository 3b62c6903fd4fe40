"""Source photometry, schema v1: one photometric measurement of one optical/NIR source per message.

The broker side publishes source alerts with this schema (the GW170817 replay does, see
``docs/gw170817-replay.md``); a consumer parses them with :meth:`PhotometryMessage.from_dict`.
JSON Schema: ``docs/schemas/photometry-v1.json``. On Kafka a point travels as a hop ``JSONBlob``
(``_format: json``), with the header ``x-tom-mma-schema: tom-mma/photometry/v1``.

``point_id`` is a deterministic id of the measurement (:func:`make_point_id`): the same
measurement always gets the same id, so a consumer keyed on it stores a replayed point once.

Examples
--------
>>> point = PhotometryMessage.create(
...     object_name="AT2017gfo", ra=197.450375, dec=-23.381494, mjd=57983.9784, band="r",
...     magnitude=18.04, magnitude_error=0.02, source="2017ApJ...848L..17C",
...     telescope="Blanco", instrument="DECam", gw_event="MS170817a",
... )
>>> point.time
'2017-08-18T23:28:53.760Z'
>>> PhotometryMessage.from_dict(point.to_dict()) == point
True
>>> PhotometryMessage.from_dict({**point.to_dict(), "system": "ST"})
Traceback (most recent call last):
...
tom_mma.schemas.fields.MessageError: photometry point: system must be one of AB, Vega, not 'ST'
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from tom_mma.schemas.fields import FieldReader, JSONMessage

__all__ = [
    "SCHEMA_ID",
    "SYSTEMS",
    "PhotometryMessage",
    "make_point_id",
    "mjd_to_iso",
    "iso_to_mjd",
]

SCHEMA_ID = "tom-mma/photometry/v1"
"""The value of the ``schema`` field (and of the ``x-tom-mma-schema`` header) of every v1 point."""

SYSTEMS = ("AB", "Vega")
"""Allowed magnitude systems."""

_PREFIX = "photometry point"
_MJD_EPOCH = datetime(1858, 11, 17, tzinfo=UTC)
# time and mjd must agree to this many days (about 1 s): both are written, a reader may use either
_TIME_TOLERANCE_DAYS = 1.2e-5


_READ = FieldReader(_PREFIX)
_fail = _READ.fail
_require = _READ.require
_str = _READ.str
_float = _READ.float


def mjd_to_iso(mjd: float) -> str:
    """ISO 8601 UTC (millisecond precision, ``Z`` suffix) of an MJD (UTC, leap seconds ignored).

    Examples
    --------
    >>> mjd_to_iso(57982.52852366271)
    '2017-08-17T12:41:04.444Z'
    """
    moment = _MJD_EPOCH + timedelta(days=mjd)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def iso_to_mjd(text: str) -> float:
    """MJD (UTC) of an ISO 8601 time with a UTC offset; ``ValueError`` otherwise.

    Examples
    --------
    >>> round(iso_to_mjd("2017-08-17T12:41:04.444Z"), 8)
    57982.52852366
    """
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None or moment.utcoffset() != timedelta(0):
        raise ValueError(f"not a UTC time (end with Z or +00:00): {text!r}")
    return (moment - _MJD_EPOCH) / timedelta(days=1)


def make_point_id(
    object_name: str,
    source: str,
    mjd: float,
    band: str,
    magnitude: float,
    upper_limit: bool = False,
    instrument: str | None = None,
    telescope: str | None = None,
) -> str:
    """The deterministic id of a measurement: 32 hex digits of a SHA-256 of its defining fields.

    MJD is rounded to 1e-6 d (0.09 s) and the magnitude to 1e-4 mag, so that the id does not
    depend on how a float was printed.

    Examples
    --------
    >>> make_point_id("AT2017gfo", "2017ApJ...848L..17C", 57983.9784, "r", 18.04)
    '8e5b70633cbb95ed4e5bac40674dc2e9'
    """
    canonical = "|".join(
        [
            SCHEMA_ID,
            object_name,
            source,
            f"{mjd:.6f}",
            band,
            f"{magnitude:.4f}",
            "limit" if upper_limit else "detection",
            instrument or "",
            telescope or "",
        ]
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class PhotometryMessage(JSONMessage):
    """One photometric measurement of a source, schema ``tom-mma/photometry/v1``.

    Parameters
    ----------
    point_id : str
        Deterministic id of this measurement (:func:`make_point_id`); the idempotency key.
    object_name : str
        The source's name (e.g. ``"AT2017gfo"``); a TOM merges Targets on it.
    aliases : tuple of str
        Other names of the source (e.g. ``("SSS17a", "DLT17ck")``).
    ra, dec : float
        ICRS (J2000) position in degrees, ``0 <= ra < 360``, ``-90 <= dec <= 90``.
    mjd : float
        Time of the observation, MJD (UTC).
    time : str
        The same time, ISO 8601 UTC (``Z`` suffix); must agree with ``mjd`` to 1 s.
    band : str
        Filter name as the paper gives it (``g``, ``r``, ``Ks``, ``F160W``...).
    magnitude : float
        Magnitude in ``system``, or the limiting magnitude when ``upper_limit``.
    magnitude_error : float or None
        1-sigma error (mean of the two sides when the paper gives asymmetric errors); None if unknown.
    upper_limit : bool
        True when ``magnitude`` is a non-detection limit.
    system : str
        ``"AB"`` or ``"Vega"``.
    telescope, instrument : str or None
        Where the point was measured.
    source : str
        The reference (ADS bibcode) of the paper the measurement comes from.
    gw_event : str or None
        The GW superevent id the source follows up, if any.
    schema : str
        Always :data:`SCHEMA_ID`.
    """

    _read = _READ

    point_id: str
    object_name: str
    ra: float
    dec: float
    mjd: float
    time: str
    band: str
    magnitude: float
    source: str
    magnitude_error: float | None = None
    upper_limit: bool = False
    system: str = "AB"
    telescope: str | None = None
    instrument: str | None = None
    aliases: tuple[str, ...] = ()
    gw_event: str | None = None
    schema: str = SCHEMA_ID

    def __post_init__(self) -> None:
        if self.schema != SCHEMA_ID:
            raise _fail(f"schema must be {SCHEMA_ID!r}, not {self.schema!r}")
        if not (0.0 <= self.ra < 360.0):
            raise _fail(f"ra must be in [0, 360), not {self.ra}")
        if not (-90.0 <= self.dec <= 90.0):
            raise _fail(f"dec must be in [-90, 90], not {self.dec}")
        if self.system not in SYSTEMS:
            raise _fail(f"system must be one of {', '.join(SYSTEMS)}, not {self.system!r}")
        if self.magnitude_error is not None and self.magnitude_error < 0:
            raise _fail(f"magnitude_error must not be negative, not {self.magnitude_error}")
        try:
            time_mjd = iso_to_mjd(self.time)
        except ValueError:
            raise _fail(f"time must be an ISO 8601 UTC time (Z or +00:00), not {self.time!r}")
        if abs(time_mjd - self.mjd) > _TIME_TOLERANCE_DAYS:
            raise _fail(f"time {self.time} and mjd {self.mjd} disagree")
        object.__setattr__(self, "aliases", tuple(self.aliases))

    @classmethod
    def create(
        cls,
        *,
        object_name: str,
        ra: float,
        dec: float,
        mjd: float,
        band: str,
        magnitude: float,
        source: str,
        magnitude_error: float | None = None,
        upper_limit: bool = False,
        system: str = "AB",
        telescope: str | None = None,
        instrument: str | None = None,
        aliases: Sequence[str] = (),
        gw_event: str | None = None,
    ) -> PhotometryMessage:
        """A point with its ``point_id`` and ``time`` derived from the other fields."""
        return cls(
            point_id=make_point_id(object_name, source, mjd, band, magnitude, upper_limit, instrument, telescope),
            object_name=object_name,
            aliases=tuple(aliases),
            ra=ra,
            dec=dec,
            mjd=mjd,
            time=mjd_to_iso(mjd),
            band=band,
            magnitude=magnitude,
            magnitude_error=magnitude_error,
            upper_limit=upper_limit,
            system=system,
            telescope=telescope,
            instrument=instrument,
            source=source,
            gw_event=gw_event,
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready dict of this point (every field present; ``None`` as ``null``)."""
        return {
            "schema": self.schema,
            "point_id": self.point_id,
            "object_name": self.object_name,
            "aliases": list(self.aliases),
            "ra": self.ra,
            "dec": self.dec,
            "mjd": self.mjd,
            "time": self.time,
            "band": self.band,
            "magnitude": self.magnitude,
            "magnitude_error": self.magnitude_error,
            "upper_limit": self.upper_limit,
            "system": self.system,
            "telescope": self.telescope,
            "instrument": self.instrument,
            "source": self.source,
            "gw_event": self.gw_event,
        }

    @classmethod
    def from_dict(cls, data: Any) -> PhotometryMessage:
        """Parse and validate a dict; raise ``ValueError`` with a clear reason.

        Unknown keys are ignored (a later optional field must not break v1 readers); a different
        ``schema`` value is rejected.
        """
        if not isinstance(data, Mapping):
            raise _fail(f"must be a JSON object, not {type(data).__name__}")
        schema = _require(data, "schema")
        if schema != SCHEMA_ID:
            raise _fail(f"schema must be {SCHEMA_ID!r}, not {schema!r}")
        upper = data.get("upper_limit", False)
        if not isinstance(upper, bool):
            raise _fail(f"upper_limit must be true or false, not {upper!r}")
        aliases = data.get("aliases", [])
        if not isinstance(aliases, list | tuple):
            raise _fail(f"aliases must be a list, not {type(aliases).__name__}")
        system = _str(data.get("system", "AB"), "system")
        return cls(
            schema=schema,
            point_id=_str(_require(data, "point_id"), "point_id"),
            object_name=_str(_require(data, "object_name"), "object_name"),
            aliases=tuple(_str(a, f"aliases[{i}]") for i, a in enumerate(aliases)),
            ra=_float(_require(data, "ra"), "ra"),
            dec=_float(_require(data, "dec"), "dec"),
            mjd=_float(_require(data, "mjd"), "mjd"),
            time=_str(_require(data, "time"), "time"),
            band=_str(_require(data, "band"), "band"),
            magnitude=_float(_require(data, "magnitude"), "magnitude"),
            magnitude_error=_float(data.get("magnitude_error"), "magnitude_error", nullable=True),
            upper_limit=upper,
            system=system,
            telescope=_str(data.get("telescope"), "telescope", nullable=True),
            instrument=_str(data.get("instrument"), "instrument", nullable=True),
            source=_str(_require(data, "source"), "source"),
            gw_event=_str(data.get("gw_event"), "gw_event", nullable=True),
        )
