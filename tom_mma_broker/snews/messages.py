"""SNEWS 2.0 observation messages: parsing and validation of their JSON forms.

Two JSON forms are read:

* SNEWS 2.0 as ``snews-data-formats`` 1.x defines it (``tier``, ``uuid``, ``machine_time_utc``,
  ``neutrino_time_utc``, ``p_val``, ``is_test``, ``is_firedrill``, ``retract_message_uuid``,
  ``retract_latest_n``...; the JSON Schemas are in ``tests/data/snews/schema/``);
* the older ``snews_pt`` form without ``tier`` (``machine_time``, ``"is_test": "True"``), as in the SNEWS
  examples: its tier is inferred from its fields.

Times are kept as integer nanoseconds since the Unix epoch (UTC), so that the coincidence arithmetic is
exact on every CPU. Leap seconds are not counted (as ``numpy.datetime64``, which ``snews-cs`` uses).

Payloads that are Python pickles (``snews_pt`` 3.0 still publishes ``pickle.dumps`` of its objects) are
refused with :class:`SnewsMessageError`: they are never unpickled.
"""

from __future__ import annotations

import calendar
import functools
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "SnewsMessageError",
    "ObservationMessage",
    "TIERS",
    "parse_message",
    "parse_time_ns",
    "format_time_ns",
    "looks_like_pickle",
]

TIERS = ("Heartbeat", "Retraction", "CoincidenceTier", "SignificanceTier", "TimingTier")
LANES = ("observation", "test", "firedrill")


class SnewsMessageError(ValueError):
    """A message that is not a valid SNEWS 2.0 observation message (permanent: retrying cannot help)."""

    permanent = True


_ISO = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9}))?(Z|[+-]00:?00)?$",
)


def parse_time_ns(value: Any, name: str = "time") -> int:
    """An ISO 8601 UTC time as integer nanoseconds since the Unix epoch.

    Up to nine fractional digits are kept exactly; ``Z`` or a zero UTC offset are accepted, other offsets
    are refused (SNEWS times are UTC).

    Examples
    --------
    >>> parse_time_ns("1970-01-01T00:00:01.5")
    1500000000
    >>> parse_time_ns("2022-06-14T14:50:12.345275123Z") % 10**9
    345275123
    """
    if not isinstance(value, str):
        raise SnewsMessageError(f"{name} must be an ISO 8601 UTC string, not {type(value).__name__}")
    match = _ISO.match(value.strip())
    if match is None:
        raise SnewsMessageError(f"{name} is not an ISO 8601 UTC time: {value[:64]!r}")
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction = match.group(7) or ""
    try:
        # calendar.timegm validates nothing: check the fields ourselves
        if not (1 <= month <= 12 and 1 <= day <= calendar.monthrange(year, month)[1]):
            raise ValueError
        if hour > 23 or minute > 59 or second > 60:
            raise ValueError
    except ValueError:
        raise SnewsMessageError(f"{name} is not a valid date and time: {value[:64]!r}") from None
    seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    return seconds * 10**9 + int(fraction.ljust(9, "0") or 0)


@functools.lru_cache(maxsize=4096)  # an alert repeats its members' times: 20 a message at 20 detectors
def format_time_ns(ns: int) -> str:
    """Integer nanoseconds since the epoch as ISO 8601 with nine fractional digits (no zone: UTC).

    Examples
    --------
    >>> format_time_ns(1500000000)
    '1970-01-01T00:00:01.500000000'
    """
    import time

    seconds, fraction = divmod(ns, 10**9)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{fraction:09d}"


def looks_like_pickle(payload: bytes) -> bool:
    """Whether ``payload`` is a Python pickle (protocol 2 and later start with the PROTO opcode).

    Examples
    --------
    >>> import pickle
    >>> looks_like_pickle(pickle.dumps({"a": 1})), looks_like_pickle(b'{"a": 1}')
    (True, False)
    """
    if len(payload) >= 2 and payload[0] == 0x80 and 2 <= payload[1] <= 5:
        return True
    # protocols 0 and 1 end with STOP; their first opcodes are few ((, ], }, c, l, d...)
    return payload[-1:] == b"." and payload[:1] in (b"(", b"]", b"}", b"c", b"l", b"d", b"I", b"S", b"V")


def _flag(raw: dict, name: str) -> bool:
    value = raw.get(name)
    if value is None and isinstance(raw.get("meta"), dict):
        value = raw["meta"].get(name)
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise SnewsMessageError(f"{name} must be a boolean (or 'True'/'False'), not {value!r}")


def _p_value(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SnewsMessageError(f"{name} must be a number, not {type(value).__name__}")
    p = float(value)
    if not 0.0 <= p <= 1.0:
        raise SnewsMessageError(f"{name} must be in [0, 1], not {p}")
    return p


@dataclass(frozen=True)
class ObservationMessage:
    """One parsed SNEWS 2.0 message (any tier).

    ``uid`` is the message's ``uuid``, else its ``id``, else a digest of its canonical JSON: the key of
    retractions by message id and of idempotency.
    """

    uid: str
    tier: str
    detector_name: str
    lane: str = "observation"
    neutrino_time_ns: int | None = None
    machine_time_ns: int | None = None
    sent_time_ns: int | None = None
    p_val: float | None = None
    detector_status: str | None = None
    retract_message_uuid: str | None = None
    retract_latest_n: int = 0
    retraction_reason: str | None = None
    message_id: str | None = None
    raw: dict = field(default_factory=dict, compare=False, repr=False, hash=False)

    @property
    def is_test(self) -> bool:
        """Whether the message is in the test lane."""
        return self.lane == "test"

    @property
    def is_firedrill(self) -> bool:
        """Whether the message is in the fire-drill lane."""
        return self.lane == "firedrill"

    @property
    def joins_coincidence(self) -> bool:
        """Whether the decider places this message in its coincidence cache."""
        return self.tier == "CoincidenceTier"

    def default_arrival_ns(self) -> int | None:
        """The best time the message says it was sent: sent time, machine time, else neutrino time."""
        for value in (self.sent_time_ns, self.machine_time_ns, self.neutrino_time_ns):
            if value is not None:
                return value
        return None


def _infer_tier(raw: dict) -> str:
    if any(k in raw for k in ("retract_message_uuid", "retract_latest_n", "retract_latest")):
        return "Retraction"
    if "neutrino_time_utc" in raw:
        # snews_pt's combined and timing forms carry a neutrino time too: every one of them takes part in
        # the coincidence (snews_pt sends the coincidence part of a combined message to the server)
        return "CoincidenceTier"
    if "detector_status" in raw:
        return "Heartbeat"
    raise SnewsMessageError("cannot tell the tier: no tier, neutrino_time_utc, detector_status or retract_* field")


def parse_message(payload: Any) -> ObservationMessage:
    """Parse one SNEWS 2.0 observation message.

    Parameters
    ----------
    payload : dict or bytes or str
        The decoded JSON object, or its bytes. Bytes that are a Python pickle are refused.

    Raises
    ------
    SnewsMessageError
        With the reason the message is not valid.

    Examples
    --------
    >>> m = parse_message({"detector_name": "KamLAND", "neutrino_time_utc": "2022-06-14T14:21:50.345275",
    ...                    "p_val": 0.05, "is_test": "True"})
    >>> m.tier, m.lane, m.p_val
    ('CoincidenceTier', 'test', 0.05)
    """
    if isinstance(payload, bytes | bytearray | memoryview):
        payload = bytes(payload)
        if looks_like_pickle(payload):
            raise SnewsMessageError(
                "the payload is a Python pickle (as snews_pt sends): refused, never unpickled; "
                "send the message as SNEWS 2.0 JSON"
            )
        try:
            payload = json.loads(payload)
        except (UnicodeDecodeError, ValueError) as exc:
            raise SnewsMessageError(f"not JSON: {exc}") from exc
    elif isinstance(payload, str):
        try:
            payload = json.loads(payload)
        except ValueError as exc:
            raise SnewsMessageError(f"not JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise SnewsMessageError(f"a SNEWS message is a JSON object, not {type(payload).__name__}")
    raw = payload
    tier = raw.get("tier")
    if tier is None:
        tier = _infer_tier(raw)
    if tier not in TIERS:
        raise SnewsMessageError(f"unknown tier {tier!r} (one of {', '.join(TIERS)})")
    detector = raw.get("detector_name")
    if not isinstance(detector, str) or not detector.strip():
        raise SnewsMessageError("detector_name is missing or empty")
    is_test = _flag(raw, "is_test")
    is_firedrill = _flag(raw, "is_firedrill")
    lane = "test" if is_test else "firedrill" if is_firedrill else "observation"

    def opt_time(*names: str) -> int | None:
        for name in names:
            if raw.get(name) is not None:
                return parse_time_ns(raw[name], name)
        return None

    neutrino = opt_time("neutrino_time_utc")
    machine = opt_time("machine_time_utc", "machine_time")
    sent = opt_time("sent_time_utc", "sent_time")
    p_val = _p_value(raw.get("p_val"), "p_val")
    for name in ("p_values",):
        if raw.get(name) is not None:
            if not isinstance(raw[name], list):
                raise SnewsMessageError(f"{name} must be a list")
            for i, value in enumerate(raw[name]):
                _p_value(value, f"{name}[{i}]")
    status = raw.get("detector_status")
    retract_uuid = raw.get("retract_message_uuid")
    retract_n = raw.get("retract_latest_n", 0)
    if tier in ("CoincidenceTier", "TimingTier"):
        if neutrino is None:
            raise SnewsMessageError(f"a {tier} message needs neutrino_time_utc")
    if tier == "SignificanceTier":
        if raw.get("p_values") is None:
            raise SnewsMessageError("a SignificanceTier message needs p_values")
    if tier == "TimingTier":
        series = raw.get("timing_series")
        if not isinstance(series, list) or not series:
            raise SnewsMessageError("a TimingTier message needs a non-empty timing_series")
    if tier == "Heartbeat":
        if status not in ("ON", "OFF"):
            raise SnewsMessageError(f"detector_status must be ON or OFF, not {status!r}")
    if tier == "Retraction":
        if "retract_latest" in raw and "retract_latest_n" not in raw:  # snews_pt 1.x
            legacy = raw["retract_latest"]
            retract_n = 1 if legacy is True or legacy in ("True", "true") else legacy
        if isinstance(retract_n, bool) or not isinstance(retract_n, int) or retract_n < 0:
            raise SnewsMessageError(f"retract_latest_n must be a non-negative integer, not {retract_n!r}")
        if retract_uuid is not None and not isinstance(retract_uuid, str):
            raise SnewsMessageError("retract_message_uuid must be a string")
        if retract_n > 0 and retract_uuid is not None:
            raise SnewsMessageError("retract_message_uuid cannot be given with retract_latest_n > 0")
        if retract_n == 0 and retract_uuid is None:
            raise SnewsMessageError("a retraction needs retract_message_uuid or retract_latest_n > 0")
    else:
        retract_uuid, retract_n = None, 0
    uid = raw.get("uuid") or raw.get("id")
    if uid is not None and not isinstance(uid, str):
        uid = str(uid)
    if not uid:
        canonical = json.dumps(raw, sort_keys=True, separators=(",", ":"), default=str)
        uid = "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()[:32]
    reason = raw.get("retraction_reason")
    return ObservationMessage(
        uid=uid[:200],
        tier=tier,
        detector_name=detector.strip()[:100],
        lane=lane,
        neutrino_time_ns=neutrino if tier != "Heartbeat" else None,
        machine_time_ns=machine,
        sent_time_ns=sent,
        p_val=p_val,
        detector_status=status if tier == "Heartbeat" else None,
        retract_message_uuid=retract_uuid,
        retract_latest_n=retract_n,
        retraction_reason=str(reason)[:1000] if reason is not None else None,
        message_id=raw.get("id") if isinstance(raw.get("id"), str) else None,
        raw=raw,
    )
