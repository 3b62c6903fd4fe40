"""GCN JSON notices of gamma-ray, X-ray and neutrino events, and SNEWS coincidence alerts, parsed and validated.

Kinds read (schemas: ``nasa-gcn/gcn-schema`` ``gcn/notices/``, samples in ``tests/data/gcn/``):

=====================  ============================================================  =====================
source                 GCN Kafka topic                                               event id
=====================  ============================================================  =====================
``fermi-gbm``          ``gcn.notices.fermi.gbm.*``                                   ``id[0]`` (trigger)
``swift-bat-guano``    ``gcn.notices.swift.bat.guano``                               ``id[0]``
``svom-eclairs``       ``gcn.notices.svom.voevent.eclairs`` (JSON)                   ``id[0]`` (burst id)
``ep-wxt``             ``gcn.notices.einstein_probe.wxt.alert``                      ``id[0]``
``icecube-track``      ``gcn.notices.icecube.gold_bronze_track_alerts``              ``id[0]`` (run_event)
``icecube-lvk-nu``     ``gcn.notices.icecube.lvk_nu_track_search``                   ``ref_ID`` (superevent)
``superk-sn``          ``gcn.notices.superk.sn_alert``                               ``id``
``snews``              the SNEWS decider's alert topic (``tom-mma/snews-alert``)     the sub-group's id
``snews-gcn``          ``gcn.notices.snews2.alert`` (see :mod:`.neutrinos`)          ``id``
=====================  ============================================================  =====================

Each becomes a frozen :class:`ParsedNotice`: the event's time, position and error circle (or a HEALPix map,
inline or by URL, never fetched), its alert type (``initial``, ``update``, ``retraction``...) and its order
(``alert_datetime``, ``record_number``). Bad input raises :class:`TransientNoticeError` (permanent: the
stream quarantines it at once) before anything is stored.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import neutrinos

__all__ = ["TransientNoticeError", "ParsedNotice", "SOURCES", "parse_notice", "detect_source"]


class TransientNoticeError(ValueError):
    """A notice that cannot be taken (permanent: trying again cannot help)."""

    permanent = True


#: source -> (messenger, display name)
SOURCES = {
    "fermi-gbm": ("gamma", "Fermi GBM"),
    "swift-bat-guano": ("gamma", "Swift BAT-GUANO"),
    "svom-eclairs": ("gamma", "SVOM ECLAIRs"),
    "ep-wxt": ("x-ray", "Einstein Probe WXT"),
    "icecube-track": ("neutrino", "IceCube"),
    "icecube-lvk-nu": ("neutrino", "IceCube LVK track search"),
    "superk-sn": ("neutrino", "Super-Kamiokande"),
    "snews": ("neutrino", "SNEWS"),
    "snews-gcn": ("neutrino", "SNEWS (GCN)"),
}
_SCHEMA_PATHS = {
    "fermi/gbm/": "fermi-gbm",
    "swift/bat/guano": "swift-bat-guano",
    "svom/": "svom-eclairs",
    "einstein_probe/wxt": "ep-wxt",
    "icecube/single_neutrino_alerts": "icecube-track",
    "icecube/lvk_nu_track_search": "icecube-lvk-nu",
    "superk/sn_alert": "superk-sn",
}
ALERT_TYPES = ("initial", "subsequent", "update", "retraction")
_TEST_TENSES = {"test", "injection", "commanded", "planned"}
_SUPEREVENT = re.compile(r"^[MT]?S\d{6}[a-z]{1,3}$")
_ISO = re.compile(r"^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]00:?00)?$")


@dataclass(frozen=True)
class ParsedNotice:
    """One notice of a transient event, validated."""

    source: str
    event_id: str
    name: str
    alert_type: str
    trigger_time: dt.datetime
    digest: str
    alert_time: dt.datetime | None = None
    record_number: int | None = None
    is_test: bool = False
    ra: float | None = None
    dec: float | None = None
    error_radius: float | None = None
    containment: float | None = None
    healpix_url: str = ""
    healpix: bytes | None = field(default=None, repr=False)
    superevent_id: str = ""
    far: float | None = None
    properties: Mapping[str, Any] = field(default_factory=dict)
    content: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def messenger(self) -> str:
        """The messenger of the notice's source (gamma rays, X-rays, neutrinos)."""
        return SOURCES[self.source][0]

    @property
    def is_retraction(self) -> bool:
        """Whether the notice retracts its event."""
        return self.alert_type == "retraction"


def parse_time(value: Any, where: str) -> dt.datetime:
    """An ISO 8601 UTC time (up to nine fractional digits; kept to the microsecond).

    Examples
    --------
    >>> parse_time("2023-04-16T05:22:26.150574Z", "t").isoformat()
    '2023-04-16T05:22:26.150574+00:00'
    """
    if not isinstance(value, str):
        raise TransientNoticeError(f"{where} must be an ISO 8601 string, not {type(value).__name__}")
    match = _ISO.match(value.strip())
    if match is None:
        raise TransientNoticeError(f"{where} is not an ISO 8601 UTC time: {value[:64]!r}")
    fraction = (match.group(3) or "")[:6].ljust(6, "0")
    try:
        return dt.datetime.fromisoformat(f"{match.group(1)}T{match.group(2)}.{fraction}+00:00")
    except ValueError:
        raise TransientNoticeError(f"{where} is not a valid date and time: {value[:64]!r}") from None


def _number(value: Any, where: str, low: float | None = None, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TransientNoticeError(f"{where} must be a number, not {type(value).__name__}")
    x = float(value)
    if x != x or (low is not None and x < low) or (high is not None and x > high):
        raise TransientNoticeError(f"{where} must be in [{low}, {high}], not {value!r}")
    return x


def _opt(content: Mapping, key: str, low: float | None = None, high: float | None = None) -> float | None:
    value = content.get(key)
    return None if value is None else _number(value, key, low, high)


def _ids(content: Mapping, key: str = "id") -> list[str]:
    value = content.get(key)
    if isinstance(value, str) and value:
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str | int) and str(v) for v in value):
        return [str(v) for v in value]
    raise TransientNoticeError(f"{key} must be a non-empty string or list of strings, not {value!r}")


def _position(loc: Mapping, where: str = "") -> dict[str, Any]:
    """ra, dec, error radius and containment of a GCN core Localization block (all or nothing of ra/dec)."""
    ra, dec = loc.get("ra"), loc.get("dec")
    if ra is None and dec is None:
        return {}
    if ra is None or dec is None:
        raise TransientNoticeError(f"{where}ra and {where}dec come together")
    out: dict[str, Any] = {"ra": _number(ra, f"{where}ra", 0, 360) % 360, "dec": _number(dec, f"{where}dec", -90, 90)}
    error = loc.get("ra_dec_error")
    if isinstance(error, list):  # an ellipse: its semi-major axis as the circle's radius (the larger region)
        if not error:
            raise TransientNoticeError(f"{where}ra_dec_error is an empty list")
        error = error[0]
    if error is not None:
        out["error_radius"] = _number(error, f"{where}ra_dec_error", 0, 180)
        out["containment"] = _number(loc.get("containment_probability", 0.9), "containment_probability", 0, 1)
    return out


def _healpix(content: Mapping) -> dict[str, Any]:
    out: dict[str, Any] = {}
    url = content.get("healpix_url")
    if url is not None:
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise TransientNoticeError(f"healpix_url must be an http(s) URL, not {str(url)[:80]!r}")
        out["healpix_url"] = url[:500]
    data = content.get("healpix_file")
    if data is not None:
        if not isinstance(data, str):
            raise TransientNoticeError("healpix_file must be a base64 string")
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise TransientNoticeError(f"healpix_file is not base64: {exc}") from exc
        if not raw.startswith(b"SIMPLE") and raw[:2] != b"\x1f\x8b":
            raise TransientNoticeError("healpix_file is not a FITS file (nor gzipped)")
        out["healpix"] = raw
    return out


def detect_source(content: Mapping[str, Any]) -> str:
    """The source of a notice, from its ``$schema`` (else its mission and instrument).

    Examples
    --------
    >>> detect_source({"$schema": "https://gcn.nasa.gov/schema/main/gcn/notices/swift/bat/Guano.schema.json"})
    'swift-bat-guano'
    >>> detect_source({"mission": "Super-Kamiokande"})
    'superk-sn'
    """
    schema = str(content.get("$schema") or content.get("schema") or "")
    if schema.startswith("tom-mma/snews-alert"):
        return "snews"
    if neutrinos.is_gcn_snews(content):
        return "snews-gcn"
    lowered = schema.lower()
    for path, source in _SCHEMA_PATHS.items():
        if f"/notices/{path}" in lowered:
            return source
    mission = str(content.get("mission", "")).lower()
    instrument = str(content.get("instrument", "")).lower()
    if mission == "fermi" and instrument == "gbm":
        return "fermi-gbm"
    if mission == "swift" and instrument == "bat-guano":
        return "swift-bat-guano"
    if instrument == "eclairs":
        return "svom-eclairs"
    if instrument == "wxt":
        return "ep-wxt"
    if mission == "icecube" and "pipeline" in content:
        return "icecube-track"
    if str(content.get("type", "")).startswith("IceCube LVK Alert Nu Track Search"):
        return "icecube-lvk-nu"
    if mission == "super-kamiokande":
        return "superk-sn"
    if "detector_names" in content and "neutrino_times" in content:
        return "snews"
    raise TransientNoticeError(f"unknown notice kind (schema {schema[:100]!r}, mission {mission!r})")


def _content(payload: Any) -> dict[str, Any]:
    if isinstance(payload, bytes | bytearray | memoryview | str):
        try:
            payload = json.loads(bytes(payload) if not isinstance(payload, str) else payload)
        except (ValueError, UnicodeDecodeError) as exc:
            raise TransientNoticeError(f"not JSON: {exc}") from exc
    if not isinstance(payload, Mapping):
        raise TransientNoticeError(f"a notice is a JSON object, not {type(payload).__name__}")
    return dict(payload)


def _digest(content: Mapping) -> str:
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def parse_notice(payload: Any, source: str | None = None) -> ParsedNotice:
    """Parse and validate one notice.

    Parameters
    ----------
    payload : dict or bytes or str
        The JSON notice.
    source : str, optional
        Its source (see :data:`SOURCES`); detected from the notice when not given. A notice of another
        source than the one given is refused (a handler on the wrong topic).

    Raises
    ------
    TransientNoticeError
        With the reason.
    """
    content = _content(payload)
    detected = detect_source(content)
    if source is not None and detected != source:
        raise TransientNoticeError(f"a {detected} notice, where {source} was expected")
    if detected in ("snews", "snews-gcn"):
        return _parse_snews(content, gcn=detected == "snews-gcn")
    if detected == "icecube-lvk-nu":
        return _parse_lvk_nu(content)
    alert_type = str(content.get("alert_type", "initial")).lower()
    if alert_type not in ALERT_TYPES:
        raise TransientNoticeError(f"alert_type must be one of {', '.join(ALERT_TYPES)}, not {alert_type!r}")
    if "trigger_time" not in content:
        raise TransientNoticeError("trigger_time is missing")
    ids = _ids(content)
    name = ids[-1]
    if detected == "icecube-track" and content.get("event_name"):
        name = _ids(content, "event_name")[0]
    record = content.get("record_number")
    if record is not None and (isinstance(record, bool) or not isinstance(record, int) or record < 0):
        raise TransientNoticeError(f"record_number must be a non-negative integer, not {record!r}")
    properties = {
        k: content[k]
        for k in ("rate_snr", "image_snr", "p_astro", "nu_energy", "classification", "duration_class", "pipeline",
                  "n_events", "n_ibd_events", "luminosity_distance", "follow_up_event", "slew_status", "net_count_rate")
        if k in content
    }  # fmt: skip
    if detected == "superk-sn":  # detectors and times as the SNEWS events give theirs
        properties.update(neutrinos.superk_properties(content))
    is_test = str(content.get("alert_tense", "current")).lower() in _TEST_TENSES
    return ParsedNotice(
        source=detected,
        # a test notice may reuse a real event's id (Super-K's examples do): it is an event of its own
        event_id=(("test:" if is_test else "") + ids[0])[:128],
        name=name[:128],
        alert_type=alert_type,
        trigger_time=parse_time(content["trigger_time"], "trigger_time"),
        digest=_digest(content),
        alert_time=parse_time(content["alert_datetime"], "alert_datetime") if content.get("alert_datetime") else None,
        record_number=record,
        is_test=is_test,
        far=_opt(content, "far", 0),
        properties=properties,
        content=content,
        **_position(content),
        **_healpix(content),
    )


def _parse_lvk_nu(content: Mapping[str, Any]) -> ParsedNotice:
    superevent = content.get("ref_ID")
    if not isinstance(superevent, str) or not _SUPEREVENT.match(superevent):
        raise TransientNoticeError(f"ref_ID must name an LVK superevent, not {superevent!r}")
    if "trigger_time" not in content:
        raise TransientNoticeError("trigger_time is missing")
    events = content.get("coincident_events") or []
    if not isinstance(events, list):
        raise TransientNoticeError("coincident_events must be a list")
    n = content.get("n_events_coincident", len(events))
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise TransientNoticeError(f"n_events_coincident must be a non-negative integer, not {n!r}")
    position: dict[str, Any] = {}
    best = content.get("most_probable_direction")
    pvals: list[float] = []
    for i, event in enumerate(events):
        if not isinstance(event, Mapping) or not isinstance(event.get("localization"), Mapping):
            raise TransientNoticeError(f"coincident_events[{i}] has no localization")
        _position(event["localization"], f"coincident_events[{i}].localization.")
        pval = event.get("event_pval_generic")
        pvals.append(1.0 if pval is None else _number(pval, f"coincident_events[{i}].event_pval_generic", 0, 1))
    if n and events:
        # the most significant coincident track: its circle, centred where IceCube says most probable
        first = events[min(range(len(events)), key=pvals.__getitem__)]
        position = _position(first["localization"], "coincident_events.localization.")
        if isinstance(best, Mapping) and best.get("ra") is not None:
            position.update(_position({"ra": best["ra"], "dec": best.get("dec")}, "most_probable_direction."))
    reference = content.get("reference") or {}
    properties = {
        "n_events_coincident": n,
        "pval_generic": content.get("pval_generic"),
        "pval_bayesian": content.get("pval_bayesian"),
        "reference": reference,
        "coincident_events": events,
    }
    return ParsedNotice(
        source="icecube-lvk-nu",
        event_id=superevent,
        name=f"IceCube track search {superevent}",
        alert_type="update",
        trigger_time=parse_time(content["trigger_time"], "trigger_time"),
        digest=_digest(content),
        alert_time=parse_time(content["alert_datetime"], "alert_datetime") if content.get("alert_datetime") else None,
        superevent_id=superevent,
        properties=properties,
        content=content,
        **position,
    )


def _parse_snews(content: Mapping[str, Any], gcn: bool) -> ParsedNotice:
    parse = neutrinos.parse_gcn_snews if gcn else neutrinos.parse_snews_alert
    fields = parse(content, parse_time, TransientNoticeError)
    return ParsedNotice(source="snews-gcn" if gcn else "snews", digest=_digest(content), content=content, **fields)
