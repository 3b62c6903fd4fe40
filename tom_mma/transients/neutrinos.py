"""Supernova-neutrino notices: SNEWS 2.0 coincidence alerts (the decider's and GCN's) and Super-Kamiokande's.

Each gives a neutrino event with its detectors (``detector_names``), their neutrino times
(``neutrino_times``, ISO 8601 UTC), p-values where given and the false-alarm figure, in the event's
``properties``:

- **the SNEWS decider's alerts** (``tom-mma/snews-alert``): one event per sub-group; ``UPDATE`` updates it,
  a ``RETRACTION`` that leaves fewer than two detectors retracts it.
- **GCN's SNEWS notices** (``gcn.notices.snews2.alert``). GCN has published no SNEWS schema yet (none in
  ``nasa-gcn/gcn-schema`` at 2ca8bdf5): the form read is the one GCN's other notices share, its core schemas
  (``Alert``, ``Event``, ``Reporter``, ``DateTime``, ``Statistics``) with ``mission`` ``SNEWS``, plus the
  SNEWS 2.0 alert's ``detector_names``, ``neutrino_times`` (or ``event_times_utc``), ``p_values`` and
  ``false_alarm_prob``. The nested draft of the SNEWS-to-GCN bridge (``alert``, ``event``, ``reporter``,
  ``datetime``, ``statistics`` objects, ``snews2_tier``, ``tier_data``) is read too, flattened to that form.
- **Super-Kamiokande** (``gcn.notices.superk.sn_alert``): one detector, ``Super-K``, at ``trigger_time``;
  ``far`` (Hz) where the notice gives one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["parse_snews_alert", "parse_gcn_snews", "flatten_gcn_snews", "superk_properties", "is_gcn_snews"]

_SNEWS_TYPES = {"COINC_MSG", "COINC_MSG_STAGGERED", "UPDATE", "RETRACTION"}
_NESTED = ("alert", "event", "reporter", "datetime", "statistics")


def _names_and_times(content: Mapping[str, Any], times_key: str, error: type[Exception]) -> tuple[list[str], list]:
    names, times = content.get("detector_names"), content.get(times_key)
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise error("detector_names must be a non-empty list of names")
    if len(set(names)) != len(names):
        raise error("detector_names must name each detector once")
    if not isinstance(times, list) or len(times) != len(names):
        raise error(f"{times_key} must give one time per detector")
    return names, times


def _p_values(content: Mapping[str, Any], n: int, error: type[Exception]) -> list | None:
    values = content.get("p_values")
    if values is None:
        return None
    ok = isinstance(values, list) and len(values) == n
    number = (int, float)
    ok = ok and all(v is None or (isinstance(v, number) and not isinstance(v, bool) and 0 <= v <= 1) for v in values)
    if not ok:
        raise error("p_values must give one p-value in [0, 1] (or null) per detector")
    return values


def _fap(content: Mapping[str, Any], error: type[Exception]) -> float | None:
    value = content.get("false_alarm_prob")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value or value < 0:
        raise error(f"false_alarm_prob must be a non-negative number, not {value!r}")
    return float(value)


def parse_snews_alert(content: Mapping[str, Any], parse_time: Callable, error: type[Exception]) -> dict[str, Any]:
    """The :class:`~tom_mma.transients.notices.ParsedNotice` fields of a SNEWS decider alert.

    Parameters
    ----------
    content : mapping
        The alert (``tom-mma/snews-alert``).
    parse_time : callable
        ``parse_time(value, where)`` of the notices module.
    error : type
        The exception to raise with the reason.
    """
    kind = str(content.get("alert_type", ""))
    prefix, _, base = kind.rpartition(" ")
    if base not in _SNEWS_TYPES or prefix not in ("", "TEST", "FIREDRILL"):
        raise error(f"not a SNEWS coincidence alert type: {kind!r}")
    names, times = _names_and_times(content, "neutrino_times", error)
    parsed = [parse_time(t, f"neutrino_times[{i}]") for i, t in enumerate(times)]
    lane = content.get("lane", "test" if prefix == "TEST" else "firedrill" if prefix == "FIREDRILL" else "observation")
    group = content.get("group_id") or f"{content.get('server_tag', '')}:{lane}:{content.get('sub_list_number')}"
    alert_type = {"RETRACTION": "retraction" if len(names) < 2 else "update", "UPDATE": "update"}.get(base, "initial")
    return {
        "event_id": str(group)[:128],
        "name": f"SNEWS {min(parsed).strftime('%Y-%m-%d %H:%M:%S')}",
        "alert_type": alert_type,
        "trigger_time": min(parsed),
        "alert_time": parse_time(content["sent_time"], "sent_time") if content.get("sent_time") else None,
        "is_test": lane != "observation",
        "properties": {
            "detector_names": names,
            "neutrino_times": times,
            "p_values": _p_values(content, len(names), error),
            "false_alarm_prob": _fap(content, error),
            "snews_alert_type": kind,
            "sub_list_number": content.get("sub_list_number"),
            "server_tag": content.get("server_tag"),
        },
    }


def is_gcn_snews(content: Mapping[str, Any]) -> bool:
    """Whether ``content`` is a GCN SNEWS notice (flat or the bridge's nested draft).

    Examples
    --------
    >>> is_gcn_snews({"mission": "SNEWS", "detector_names": ["Super-K"]})
    True
    >>> is_gcn_snews({"reporter": {"mission": "SNEWS"}, "snews2_tier": "CoincidenceTier"})
    True
    >>> is_gcn_snews({"mission": "Super-Kamiokande"})
    False
    """
    if "/notices/snews" in str(content.get("$schema", "")).lower():
        return True
    reporter = content.get("reporter")
    mission = reporter.get("mission") if isinstance(reporter, Mapping) else content.get("mission")
    return str(mission or "").upper() in ("SNEWS", "SNEWS2", "SNEWS 2.0") or (
        "snews2_tier" in content and isinstance(reporter, Mapping)
    )


def flatten_gcn_snews(content: Mapping[str, Any], error: type[Exception]) -> dict[str, Any]:
    """The flat GCN form of a SNEWS notice (the bridge's nested objects merged in, ``tier_data`` too).

    Examples
    --------
    >>> flat = flatten_gcn_snews({"alert": {"alert_type": "initial"}, "event": {"id": "x"},
    ...     "tier_data": {"p_values": [0.1]}, "detector_names": ["KamLAND"]}, ValueError)
    >>> sorted(flat)
    ['alert_type', 'detector_names', 'id', 'p_values']
    """
    if not any(isinstance(content.get(k), Mapping) for k in _NESTED):
        return dict(content)
    flat: dict[str, Any] = {}
    for key, value in content.items():
        if key in (*_NESTED, "tier_data"):
            if value is None:
                continue
            if not isinstance(value, Mapping):
                raise error(f"{key} must be an object, not {type(value).__name__}")
            for inner, x in value.items():
                flat.setdefault(inner, x)
        else:
            flat[key] = value
    return flat


def parse_gcn_snews(content: Mapping[str, Any], parse_time: Callable, error: type[Exception]) -> dict[str, Any]:
    """The :class:`~tom_mma.transients.notices.ParsedNotice` fields of a GCN SNEWS notice (flattened first).

    The event is the notice's ``id``; its time the earliest neutrino time (``trigger_time`` when the notice
    gives no times). A test notice (``alert_tense`` test...) or one marked ``is_test``/``is_firedrill`` is a
    test event.
    """
    flat = flatten_gcn_snews(content, error)
    ids = flat.get("id")
    if isinstance(ids, list) and ids and all(isinstance(i, str) and i for i in ids):
        ids = ids[0]
    if not isinstance(ids, str) or not ids:
        raise error(f"id must be a non-empty string or list of strings, not {ids!r}")
    alert_type = str(flat.get("alert_type", "initial")).lower()
    if alert_type not in ("initial", "subsequent", "update", "retraction"):
        raise error(f"alert_type must be initial, subsequent, update or retraction, not {alert_type!r}")
    times_key = "neutrino_times" if "neutrino_times" in flat else "event_times_utc"
    names, times = _names_and_times(flat, times_key, error)
    parsed = [parse_time(t, f"{times_key}[{i}]") for i, t in enumerate(times)]
    trigger = parse_time(flat["trigger_time"], "trigger_time") if flat.get("trigger_time") else min(parsed)
    record = flat.get("record_number")
    if record is not None and (isinstance(record, bool) or not isinstance(record, int) or record < 0):
        raise error(f"record_number must be a non-negative integer, not {record!r}")
    far = flat.get("far")
    if far is not None and (isinstance(far, bool) or not isinstance(far, int | float) or not far >= 0):
        raise error(f"far must be a non-negative number (Hz), not {far!r}")
    tense = str(flat.get("alert_tense", "current")).lower()
    is_test = tense in {"test", "injection", "commanded", "planned"} or bool(flat.get("is_test"))
    is_test = is_test or bool(flat.get("is_firedrill"))
    return {
        "event_id": (("test:" if is_test else "") + ids)[:128],
        "name": f"SNEWS {min(parsed).strftime('%Y-%m-%d %H:%M:%S')}",
        "alert_type": alert_type,
        "trigger_time": trigger,
        "alert_time": parse_time(flat["alert_datetime"], "alert_datetime") if flat.get("alert_datetime") else None,
        "record_number": record,
        "is_test": is_test,
        "far": None if far is None else float(far),
        "properties": {
            "detector_names": names,
            "neutrino_times": times,
            "p_values": _p_values(flat, len(names), error),
            "false_alarm_prob": _fap(flat, error),
            "snews_tier": flat.get("snews2_tier"),
        },
    }


def superk_properties(content: Mapping[str, Any]) -> dict[str, Any]:
    """Super-Kamiokande's one detector and its time, as the SNEWS events give theirs.

    Examples
    --------
    >>> superk_properties({"trigger_time": "2023-08-01T00:00:01.000000Z"})["detector_names"]
    ['Super-K']
    """
    return {"detector_names": ["Super-K"], "neutrino_times": [content.get("trigger_time")]}
