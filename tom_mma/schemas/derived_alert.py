"""Derived alerts, schema v1: what the broker's classifier publishes to the results topic.

A derived alert is one classification of one optical candidate (``kind="classification"``), or the
retraction of an earlier one (``kind="retraction"``). The broker side builds a :class:`DerivedAlert`
and publishes :meth:`DerivedAlert.to_json`; the TOM side parses it with :meth:`DerivedAlert.from_dict`.
The schema is documented in ``docs/derived-alerts.md`` and as JSON Schema in
``docs/schemas/derived-alert-v1.json``.

``alert_id`` (a UUID) is the idempotency key: the TOM stores an alert once, however often it is
delivered.

Examples
--------
>>> alert = DerivedAlert(
...     alert_id="4b7b0f0e-6f0c-4a53-9f55-4e1f0c3b2a10",
...     kind="classification",
...     created="2025-05-01T12:00:00Z",
...     candidate=AlertCandidate(name="ZTF25abcdefg", ra=150.1, dec=-12.5),
...     latest_point_mjd=60796.5,
...     kilonova_score=0.82,
...     model_version="kn-rf-1.0.0",
... )
>>> DerivedAlert.from_dict(alert.to_dict()) == alert
True
>>> DerivedAlert.from_dict({**alert.to_dict(), "kilonova_score": 1.5})
Traceback (most recent call last):
...
tom_mma.schemas.fields.MessageError: derived alert: kilonova_score must be in [0, 1], not 1.5
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tom_mma.schemas.fields import FieldReader, JSONMessage

__all__ = [
    "SCHEMA_ID",
    "KINDS",
    "MAGNITUDE_SYSTEMS",
    "AlertCandidate",
    "AlertPoint",
    "DerivedAlert",
    "utc_now_iso",
]

SCHEMA_ID = "tom-mma/derived-alert/v1"
"""The value of the ``schema`` field of every v1 derived alert."""

KINDS = ("classification", "retraction")
"""Allowed values of ``kind``."""

_PREFIX = "derived alert"


_READ = FieldReader(_PREFIX)
_fail = _READ.fail
_require = _READ.require
_str = _READ.str
_float = _READ.float
_uuid = _READ.uuid
_iso_utc = _READ.iso_utc
_str_list = _READ.str_list


def utc_now_iso() -> str:
    """The current time as ISO 8601 UTC with a ``Z`` suffix (for ``created``).

    Examples
    --------
    >>> utc_now_iso().endswith("Z")
    True
    """
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class AlertCandidate:
    """The optical candidate a derived alert classifies.

    Parameters
    ----------
    name : str
        The candidate's name at the source (e.g. a ZTF object id); the TOM merges Targets on it.
    ra, dec : float
        ICRS position in degrees (``0 <= ra < 360``, ``-90 <= dec <= 90``).
    aliases : tuple of str
        Other names of the same candidate.
    """

    name: str
    ra: float
    dec: float
    aliases: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not (0.0 <= self.ra < 360.0):
            raise _fail(f"candidate.ra must be in [0, 360), not {self.ra}")
        if not (-90.0 <= self.dec <= 90.0):
            raise _fail(f"candidate.dec must be in [-90, 90], not {self.dec}")
        object.__setattr__(self, "aliases", tuple(self.aliases))

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready dict of this candidate."""
        return {"name": self.name, "aliases": list(self.aliases), "ra": self.ra, "dec": self.dec}

    @classmethod
    def from_dict(cls, data: Any) -> AlertCandidate:
        """Parse and validate; raise ``ValueError`` with the reason."""
        if not isinstance(data, Mapping):
            raise _fail(f"candidate must be an object, not {type(data).__name__}")
        return cls(
            name=_str(_require(data, "name", "candidate."), "candidate.name"),
            aliases=_str_list(data.get("aliases", []), "candidate.aliases"),
            ra=_float(_require(data, "ra", "candidate."), "candidate.ra"),
            dec=_float(_require(data, "dec", "candidate."), "candidate.dec"),
        )


MAGNITUDE_SYSTEMS = ("AB", "Vega")
"""The magnitude systems a derived alert's photometry may be in (as in ``tom-mma/photometry/v1``)."""


@dataclass(frozen=True)
class AlertPoint:
    """One photometric point the classification used.

    Parameters
    ----------
    mjd : float
        Time of the observation (MJD, UTC).
    band : str
        Filter name (e.g. ``"g"``, ``"r"``, ``"ZTF_r"``).
    magnitude : float
        Magnitude in ``system``, or the limiting magnitude when ``upper_limit`` is true.
    magnitude_error : float or None
        1-sigma error; ``None`` for upper limits or when unknown.
    upper_limit : bool
        True if ``magnitude`` is a non-detection limit.
    telescope : str or None
        Where the point came from.
    system : str
        Magnitude system, one of :data:`MAGNITUDE_SYSTEMS` (optional in v1; absent means ``"AB"``).
    """

    mjd: float
    band: str
    magnitude: float
    magnitude_error: float | None = None
    upper_limit: bool = False
    telescope: str | None = None
    system: str = "AB"

    def __post_init__(self) -> None:
        if self.system not in MAGNITUDE_SYSTEMS:
            raise _fail(f"photometry[].system must be one of {', '.join(MAGNITUDE_SYSTEMS)}, not {self.system!r}")

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready dict of this point."""
        return {
            "mjd": self.mjd,
            "band": self.band,
            "magnitude": self.magnitude,
            "magnitude_error": self.magnitude_error,
            "upper_limit": self.upper_limit,
            "telescope": self.telescope,
            "system": self.system,
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = "photometry[]") -> AlertPoint:
        """Parse and validate; raise ``ValueError`` with the reason."""
        if not isinstance(data, Mapping):
            raise _fail(f"{where} must be an object, not {type(data).__name__}")
        upper = data.get("upper_limit", False)
        if not isinstance(upper, bool):
            raise _fail(f"{where}.upper_limit must be true or false, not {upper!r}")
        error = _float(data.get("magnitude_error"), f"{where}.magnitude_error", nullable=True)
        if error is not None and error < 0:
            raise _fail(f"{where}.magnitude_error must not be negative, not {error}")
        return cls(
            mjd=_float(_require(data, "mjd", f"{where}."), f"{where}.mjd"),
            band=_str(_require(data, "band", f"{where}."), f"{where}.band"),
            magnitude=_float(_require(data, "magnitude", f"{where}."), f"{where}.magnitude"),
            magnitude_error=error,
            upper_limit=upper,
            telescope=_str(data.get("telescope"), f"{where}.telescope", nullable=True),
            system=_str(data.get("system", "AB"), f"{where}.system"),
        )


@dataclass(frozen=True)
class DerivedAlert(JSONMessage):
    """A derived alert, schema ``tom-mma/derived-alert/v1``.

    Parameters
    ----------
    alert_id : str
        UUID of this alert; the idempotency key.
    kind : str
        ``"classification"`` or ``"retraction"``.
    created : str
        When the broker made it, ISO 8601 UTC.
    candidate : AlertCandidate
        The candidate classified (for a retraction: the candidate of the retracted alert).
    latest_point_mjd : float
        MJD of the latest photometric point the classification used.
    kilonova_score : float
        Score in ``[0, 1]``.
    model_version : str
        Version of the classifier artifact.
    features : dict of str to float or None
        The features the classifier computed (``None`` where a feature is undefined).
    source_message_ids : tuple of str
        Hop ``_id`` UUIDs of the source photometry messages used.
    gw_event : str or None
        The GW superevent id the candidate relates to, if any.
    photometry : tuple of AlertPoint
        The points the classification used.
    retracts : str or None
        For ``kind="retraction"``: the ``alert_id`` retracted (required); otherwise ``None``.
    reason : str or None
        For ``kind="retraction"``: why (required); otherwise ``None``.
    schema : str
        Always :data:`SCHEMA_ID`.
    """

    _read = _READ

    alert_id: str
    kind: str
    created: str
    candidate: AlertCandidate
    latest_point_mjd: float
    kilonova_score: float
    model_version: str
    features: Mapping[str, float | None] = field(default_factory=dict)
    source_message_ids: tuple[str, ...] = ()
    gw_event: str | None = None
    photometry: tuple[AlertPoint, ...] = ()
    retracts: str | None = None
    reason: str | None = None
    schema: str = SCHEMA_ID

    def __post_init__(self) -> None:
        # a publisher builds alerts directly: check here what from_dict checks on the way in
        if self.schema != SCHEMA_ID:
            raise _fail(f"schema must be {SCHEMA_ID!r}, not {self.schema!r}")
        _uuid(self.alert_id, "alert_id")
        _iso_utc(self.created, "created")
        _str(self.model_version, "model_version")
        for name in ("kilonova_score", "latest_point_mjd"):
            _float(getattr(self, name), name)
        for i, message_id in enumerate(self.source_message_ids):
            _uuid(message_id, f"source_message_ids[{i}]")
        if self.retracts is not None:
            _uuid(self.retracts, "retracts")
        if self.kind not in KINDS:
            raise _fail(f"kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        if not (0.0 <= self.kilonova_score <= 1.0):
            raise _fail(f"kilonova_score must be in [0, 1], not {self.kilonova_score}")
        if self.kind == "retraction":
            if not self.retracts:
                raise _fail("a retraction must name the alert_id it retracts in 'retracts'")
            if not self.reason:
                raise _fail("a retraction must give a 'reason'")
            if self.retracts == self.alert_id:
                raise _fail("a retraction cannot retract itself")
        elif self.retracts is not None or self.reason is not None:
            raise _fail("'retracts' and 'reason' are only allowed on kind 'retraction'")
        object.__setattr__(self, "features", dict(self.features))
        object.__setattr__(self, "source_message_ids", tuple(self.source_message_ids))
        object.__setattr__(self, "photometry", tuple(self.photometry))

    def __hash__(self) -> int:
        # features is a dict; the alert_id identifies an alert
        return hash(self.alert_id)

    @property
    def is_retraction(self) -> bool:
        """True for ``kind="retraction"``."""
        return self.kind == "retraction"

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready dict of this alert (every field present; ``None`` as ``null``)."""
        return {
            "schema": self.schema,
            "alert_id": self.alert_id,
            "kind": self.kind,
            "created": self.created,
            "candidate": self.candidate.to_dict(),
            "latest_point_mjd": self.latest_point_mjd,
            "kilonova_score": self.kilonova_score,
            "model_version": self.model_version,
            "features": dict(self.features),
            "source_message_ids": list(self.source_message_ids),
            "gw_event": self.gw_event,
            "photometry": [p.to_dict() for p in self.photometry],
            "retracts": self.retracts,
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, data: Any) -> DerivedAlert:
        """Parse and validate a dict; raise ``ValueError`` with a clear reason.

        Unknown top-level keys are ignored (a later minor addition must not break v1 readers);
        a different ``schema`` value is rejected.
        """
        if not isinstance(data, Mapping):
            raise _fail(f"must be a JSON object, not {type(data).__name__}")
        schema = _require(data, "schema")
        if schema != SCHEMA_ID:
            raise _fail(f"schema must be {SCHEMA_ID!r}, not {schema!r}")
        features = data.get("features", {})
        if not isinstance(features, Mapping):
            raise _fail(f"features must be an object, not {type(features).__name__}")
        parsed_features = {
            _str(k, "features key"): _float(v, f"features[{k!r}]", nullable=True) for k, v in features.items()
        }
        photometry = data.get("photometry", [])
        if not isinstance(photometry, list | tuple):
            raise _fail(f"photometry must be a list, not {type(photometry).__name__}")
        retracts = data.get("retracts")
        return cls(
            schema=schema,
            alert_id=_uuid(_require(data, "alert_id"), "alert_id"),
            kind=_str(_require(data, "kind"), "kind"),
            created=_iso_utc(_require(data, "created"), "created"),
            candidate=AlertCandidate.from_dict(_require(data, "candidate")),
            latest_point_mjd=_float(_require(data, "latest_point_mjd"), "latest_point_mjd"),
            kilonova_score=_float(_require(data, "kilonova_score"), "kilonova_score"),
            model_version=_str(_require(data, "model_version"), "model_version"),
            features=parsed_features,
            source_message_ids=tuple(
                _uuid(v, f"source_message_ids[{i}]")
                for i, v in enumerate(_str_list(data.get("source_message_ids", []), "source_message_ids"))
            ),
            gw_event=_str(data.get("gw_event"), "gw_event", nullable=True),
            photometry=tuple(AlertPoint.from_dict(p, f"photometry[{i}]") for i, p in enumerate(photometry)),
            retracts=None if retracts is None else _uuid(retracts, "retracts"),
            reason=_str(data.get("reason"), "reason", nullable=True),
        )
