"""LVK gravitational-wave notices: one parser for both transports.

LVK alerts travel as Avro on Hopskotch (``igwn.gwalert``, the sky map as raw bytes) and as JSON on GCN Kafka
(``gcn.notices.igwn.gwalert``, the sky map base64-encoded). Both carry the same ``igwn.alerts.Alert`` record;
both are validated here against the Avro schema of the ``igwn-gwalert-schema`` package (JSON after decoding
its base64 fields), their sky maps are read and checked, and the result is one frozen :class:`GWNotice`.

Everything wrong with a notice raises :class:`NoticeError` with the reason: the caller (a stream handler)
lets it propagate so that the message is quarantined with that reason.

The notices carry no sequence number: :attr:`GWNotice.sort_key` orders them by ``time_created``, then by
alert type (early warning < preliminary < initial < update < retraction), then by content digest so that
two notices created in the same second always sort the same way, whatever order they arrive in.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import enum
import hashlib
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache, cached_property
from importlib import resources
from types import MappingProxyType
from typing import Any

import fastavro
from fastavro.validation import ValidationError, validate

from tom_mma.hopmessages import EmptyMessage, payload
from tom_mma.inflate import check_avro_container

from .skymaps import MultiOrderSkyMap, SkyMapError, read_multiorder

__all__ = [
    "AlertType",
    "EventKind",
    "ExternalCoincidence",
    "GWNotice",
    "NoticeError",
    "event_kind",
    "notice_from_message",
    "parse_avro",
    "parse_json",
]

_SCHEMA_PACKAGE = "igwn_gwalert_schema"
_SCHEMA_FILE = "igwn.alerts.Alert.avsc"
_MAX_REASON = 400


class NoticeError(ValueError):
    """A notice that cannot be taken: fails the schema, corrupt sky map, unknown alert type, ...

    The message is the reason shown when the notice is quarantined.

    Attributes
    ----------
    permanent : bool
        Always True: the fault is in the message itself, so handling it again cannot succeed. The reliable
        stream quarantines an exception with a truthy ``permanent`` attribute at the first attempt instead of
        retrying it.
    """

    permanent = True


class AlertType(enum.StrEnum):
    """The type of an LVK notice, in the order a superevent goes through them."""

    EARLYWARNING = "EARLYWARNING"
    PRELIMINARY = "PRELIMINARY"
    INITIAL = "INITIAL"
    UPDATE = "UPDATE"
    RETRACTION = "RETRACTION"

    @property
    def rank(self) -> int:
        """Position in the life of a superevent (0 for an early warning, 4 for a retraction).

        >>> AlertType.PRELIMINARY.rank < AlertType.UPDATE.rank < AlertType.RETRACTION.rank
        True
        """
        return list(AlertType).index(self)


class EventKind(enum.StrEnum):
    """What a superevent is, from the first letter of its GraceDB id."""

    REAL = "real"
    MOCK = "mock"
    TEST = "test"


_KIND_PREFIX = {"S": EventKind.REAL, "M": EventKind.MOCK, "T": EventKind.TEST}


def event_kind(superevent_id: str) -> EventKind:
    """The kind of a superevent from its id: ``S...`` real, ``M...`` mock (MDC), ``T...`` test.

    Raises
    ------
    NoticeError
        For an id that is not a GraceDB superevent id.

    Examples
    --------
    >>> event_kind("S190425z"), event_kind("MS181101ab"), event_kind("TS230101a")
    (<EventKind.REAL: 'real'>, <EventKind.MOCK: 'mock'>, <EventKind.TEST: 'test'>)
    """
    kind = _KIND_PREFIX.get(superevent_id[:1])
    if kind is None or len(superevent_id) < 8 or not superevent_id[1:].isalnum():
        raise NoticeError(f"not a GraceDB superevent id: {superevent_id!r}")
    return kind


@dataclass(frozen=True)
class ExternalCoincidence:
    """The ``external_coinc`` block: a coincident non-GW event (e.g. a GRB) and the combined sky map."""

    gcn_notice_id: int | str
    ivorn: str
    observatory: str
    search: str
    time_difference: float
    time_coincidence_far: float | None
    time_sky_position_coincidence_far: float | None
    combined_skymap: MultiOrderSkyMap | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class GWNotice:
    """One LVK notice, parsed and validated.

    Attributes
    ----------
    superevent_id, alert_type, time_created
        Which superevent, which kind of notice, and when LVK created it (aware UTC).
    event_time, far, significant, group, pipeline, search, instruments
        From the ``event`` block (None / empty for a retraction). ``far`` in Hz; ``group`` is ``CBC`` or
        ``Burst``.
    classification, properties
        CBC source classification and properties (empty for Burst).
    duration, central_frequency
        Burst duration (s) and central frequency (Hz); None for CBC.
    mchirp_source
        ``{"bin_edges": [...], "probabilities": [...]}`` when given.
    skymap
        The GW sky map, or None.
    external_coinc
        The external coincidence with its combined sky map, or None.
    urls
        e.g. ``{"gracedb": ...}``.
    transport
        ``"avro"`` or ``"json"``: how it came (not part of its identity).
    """

    superevent_id: str
    alert_type: AlertType
    time_created: dt.datetime
    urls: Mapping[str, str] = field(default_factory=dict)
    event_time: dt.datetime | None = None
    far: float | None = None
    significant: bool | None = None
    group: str | None = None
    pipeline: str | None = None
    search: str | None = None
    instruments: tuple[str, ...] = ()
    classification: Mapping[str, float] = field(default_factory=dict)
    properties: Mapping[str, float] = field(default_factory=dict)
    duration: float | None = None
    central_frequency: float | None = None
    mchirp_source: Mapping[str, tuple[float, ...]] | None = None
    skymap: MultiOrderSkyMap | None = field(default=None, repr=False, compare=False)
    external_coinc: ExternalCoincidence | None = None
    transport: str = field(default="", compare=False)

    @property
    def kind(self) -> EventKind:
        """Real, mock or test, from the superevent id."""
        return event_kind(self.superevent_id)

    @property
    def is_retraction(self) -> bool:
        """Whether this notice retracts its superevent."""
        return self.alert_type is AlertType.RETRACTION

    def as_dict(self) -> dict[str, Any]:
        """The notice as JSON-ready data, sky maps replaced by their SHA-256 (what is stored per notice)."""
        coinc = None
        if self.external_coinc is not None:
            c = self.external_coinc
            coinc = {
                "gcn_notice_id": c.gcn_notice_id,
                "ivorn": c.ivorn,
                "observatory": c.observatory,
                "search": c.search,
                "time_difference": c.time_difference,
                "time_coincidence_far": c.time_coincidence_far,
                "time_sky_position_coincidence_far": c.time_sky_position_coincidence_far,
                "combined_skymap_sha256": c.combined_skymap.sha256 if c.combined_skymap else None,
            }
        return {
            "superevent_id": self.superevent_id,
            "alert_type": str(self.alert_type),
            "time_created": self.time_created.isoformat(),
            "urls": dict(self.urls),
            "event_time": self.event_time.isoformat() if self.event_time else None,
            "far": self.far,
            "significant": self.significant,
            "group": self.group,
            "pipeline": self.pipeline,
            "search": self.search,
            "instruments": list(self.instruments),
            "classification": dict(self.classification),
            "properties": dict(self.properties),
            "duration": self.duration,
            "central_frequency": self.central_frequency,
            "mchirp_source": {k: list(v) for k, v in self.mchirp_source.items()} if self.mchirp_source else None,
            "skymap_sha256": self.skymap.sha256 if self.skymap else None,
            "external_coinc": coinc,
        }

    @cached_property
    def digest(self) -> str:
        """SHA-256 of the notice's content (sky maps by their digest).

        The same notice by either transport, or delivered twice, has the same digest.
        """
        canonical = json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    @property
    def sort_key(self) -> tuple[dt.datetime, int, str]:
        """Order of notices within a superevent: time created, alert type, then digest (a stable tie-break)."""
        return (self.time_created, self.alert_type.rank, self.digest)


# -- schema -------------------------------------------------------------------------------------------------
@cache
def _schemas() -> dict[str, Any]:
    """The parsed ``igwn.alerts`` Avro schemas by name (read once per process, on first use)."""
    text = resources.files(_SCHEMA_PACKAGE).joinpath(_SCHEMA_FILE).read_text()
    named: dict[str, Any] = {}
    fastavro.parse_schema(json.loads(text), named_schemas=named)
    return named


def _short(text: str) -> str:
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 3] + "..."


def _validate(datum: Mapping[str, Any], name: str, where: str) -> None:
    try:
        validate(datum, _schemas()[name], field=where, raise_errors=True)
    except ValidationError as exc:
        reasons = "; ".join(str(e) for e in exc.errors) if getattr(exc, "errors", None) else str(exc)
        raise NoticeError(_short(f"fails the igwn.alerts schema: {reasons}")) from exc


def _with_placeholder(block: Mapping[str, Any], key: str) -> dict[str, Any]:
    # validate a copy whose large bytes field is a placeholder of the same type, so that a schema error
    # message quotes a few fields, not a megabyte of FITS
    copy = dict(block)
    if isinstance(copy.get(key), bytes | bytearray):
        copy[key] = b""
    return copy


def _validate_record(record: Mapping[str, Any]) -> None:
    if not isinstance(record, Mapping):
        raise NoticeError(f"a notice is a record (dict), not {type(record).__name__}")
    alert_type = record.get("alert_type")
    if not isinstance(alert_type, str) or alert_type not in AlertType.__members__:  # a list is unhashable
        raise NoticeError(_short(f"unknown alert type {alert_type!r}"))
    event, coinc = record.get("event"), record.get("external_coinc")
    top = dict(record, event=None, external_coinc=None)
    _validate(top, "igwn.alerts.Alert", "alert")
    if event is not None:
        if not isinstance(event, Mapping):
            raise NoticeError("fails the igwn.alerts schema: event is not a record")
        _validate(_with_placeholder(event, "skymap"), "igwn.alerts.EventInfo", "event")
    if coinc is not None:
        if not isinstance(coinc, Mapping):
            raise NoticeError("fails the igwn.alerts schema: external_coinc is not a record")
        _validate(_with_placeholder(coinc, "combined_skymap"), "igwn.alerts.ExternalCoincInfo", "external_coinc")


# -- building the notice ------------------------------------------------------------------------------------
def _time(value: Any, where: str) -> dt.datetime:
    try:
        parsed = dt.datetime.fromisoformat(value)
    except (TypeError, ValueError) as exc:
        raise NoticeError(f"{where} is not an ISO 8601 time: {value!r}") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)


def _skymap(data: bytes | None, where: str) -> MultiOrderSkyMap | None:
    if data is None:
        return None
    try:
        return read_multiorder(data)
    except SkyMapError as exc:
        raise NoticeError(f"{where}: {exc}") from exc


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _build(record: Mapping[str, Any], transport: str) -> GWNotice:
    _validate_record(record)
    superevent_id = record["superevent_id"]
    event_kind(superevent_id)  # raises for an id that is not a superevent's
    alert_type = AlertType(record["alert_type"])
    event = record.get("event")
    if event is None and alert_type is not AlertType.RETRACTION:
        raise NoticeError(f"a {alert_type} notice without an event block")
    kwargs: dict[str, Any] = {}
    if event is not None:
        mchirp = event.get("mchirp_source")
        kwargs.update(
            event_time=_time(event["time"], "event.time"),
            far=float(event["far"]),
            significant=bool(event["significant"]),
            group=event["group"],
            pipeline=event["pipeline"],
            search=event["search"],
            instruments=tuple(event.get("instruments") or ()),
            classification=MappingProxyType({k: float(v) for k, v in (event.get("classification") or {}).items()}),
            properties=MappingProxyType({k: float(v) for k, v in (event.get("properties") or {}).items()}),
            duration=_optional_float(event.get("duration")),
            central_frequency=_optional_float(event.get("central_frequency")),
            mchirp_source=(
                MappingProxyType({k: tuple(float(x) for x in mchirp[k]) for k in ("bin_edges", "probabilities")})
                if mchirp
                else None
            ),
            skymap=_skymap(event.get("skymap"), "event.skymap"),
        )
    coinc = record.get("external_coinc")
    if coinc is not None:
        kwargs["external_coinc"] = ExternalCoincidence(
            gcn_notice_id=coinc["gcn_notice_id"],
            ivorn=coinc["ivorn"],
            observatory=coinc["observatory"],
            search=coinc["search"],
            time_difference=float(coinc["time_difference"]),
            time_coincidence_far=_optional_float(coinc.get("time_coincidence_far")),
            time_sky_position_coincidence_far=_optional_float(coinc.get("time_sky_position_coincidence_far")),
            combined_skymap=_skymap(coinc.get("combined_skymap"), "external_coinc.combined_skymap"),
        )
    return GWNotice(
        superevent_id=superevent_id,
        alert_type=alert_type,
        time_created=_time(record["time_created"], "time_created"),
        urls=MappingProxyType(dict(record.get("urls") or {})),
        transport=transport,
        **kwargs,
    )


def parse_avro(content: Mapping[str, Any] | list) -> GWNotice:
    """Parse the Avro form of an LVK notice (``igwn.gwalert`` on Hopskotch).

    Parameters
    ----------
    content : dict or list of one dict
        The decoded Avro record: ``hop.models.AvroBlob.content``, a dict since hop-client 0.11, a list of
        records before.

    Raises
    ------
    NoticeError
        With the reason the notice cannot be taken.
    """
    if isinstance(content, list | tuple):
        if len(content) != 1:
            raise NoticeError(f"an Avro notice holds one record, this one holds {len(content)}")
        content = content[0]
    return _build(content, "avro")


def _b64(value: Any, where: str) -> bytes | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise NoticeError(f"{where} must be a base64 string, not {type(value).__name__}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise NoticeError(f"{where} is not valid base64 (cut short?): {exc}") from exc


def parse_json(content: Mapping[str, Any] | str | bytes) -> GWNotice:
    """Parse the JSON form of an LVK notice (``gcn.notices.igwn.gwalert`` on GCN Kafka).

    The base64 sky maps are decoded, then the record is validated against the same Avro schema as
    :func:`parse_avro`.

    Parameters
    ----------
    content : dict, str or bytes
        The JSON document, decoded (``hop.models.JSONBlob.content``) or not.

    Raises
    ------
    NoticeError
        With the reason the notice cannot be taken.
    """
    if isinstance(content, bytes | bytearray | str):
        try:
            content = json.loads(content)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise NoticeError(f"not a JSON document: {exc}") from exc
    if not isinstance(content, Mapping):
        raise NoticeError(f"a JSON notice is an object, not {type(content).__name__}")
    record = dict(content)
    if isinstance(record.get("event"), Mapping):
        record["event"] = dict(record["event"], skymap=_b64(record["event"].get("skymap"), "event.skymap"))
    if isinstance(record.get("external_coinc"), Mapping):
        coinc = record["external_coinc"]
        record["external_coinc"] = dict(
            coinc, combined_skymap=_b64(coinc.get("combined_skymap"), "external_coinc.combined_skymap")
        )
    return _build(record, "json")


def notice_from_message(message: Any, transport: str) -> GWNotice:
    """Parse whatever a stream hands a topic handler into a notice.

    Parameters
    ----------
    message
        A hop model (``AvroBlob``, ``JSONBlob``, ``Blob``: the payload is ``.content``), a raw
        ``confluent_kafka.Message`` as tom-alertstreams' ``GCNClassicAlertStream`` hands it (the payload is
        ``.value()``, bytes), a decoded record (dict, or list of one dict), or the raw bytes/str of the message.
    transport : {"avro", "json"}
        Which form the topic carries.

    Raises
    ------
    NoticeError
        With the reason the notice cannot be taken.
    """
    try:
        content = payload(message)
    except EmptyMessage as exc:
        raise NoticeError(str(exc)) from exc
    if transport == "avro":
        if isinstance(content, bytes | bytearray):
            # an Avro container without hop's headers reaches the handler as a raw Blob
            # fastavro inflates each block whole: bound the inflated size first (a decompression bomb)
            check_avro_container(bytes(content), what="Avro notice", error=NoticeError)
            try:
                records = list(fastavro.reader(io.BytesIO(bytes(content))))
            except Exception as exc:  # fastavro raises ValueError, EOFError, ... for a corrupt container
                raise NoticeError(f"not an Avro container: {type(exc).__name__}: {exc}") from exc
            content = records
        return parse_avro(content)
    if transport == "json":
        return parse_json(content)
    raise ValueError(f"unknown transport {transport!r}")
