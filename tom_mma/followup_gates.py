"""Gates of the kilonova observation rule: what kind of GW event it is, and what the classifier says.

Two pure functions over plain data, so that any rule can use them and the tests need no database:

- :func:`lvk_gate`: does the LVK notice describe an event worth a kilonova follow-up? It filters on the
  notice's own fields as the LVK public alerts user guide does: ``significant`` and a false-alarm-rate
  limit, the analysis group (CBC or Burst), and for CBC events the probability that a neutron star is
  involved (``HasNS``), that matter remains outside the final object (``HasRemnant``) and that the event is
  terrestrial (``classification.Terrestrial``). Each limit is a ``TOM_MMA`` setting
  (:data:`LVK_GATE_SETTINGS`); a binary black hole merger (``HasNS`` near 0) triggers no follow-up.
- :func:`classifier_verdict`: does the derived alert pass the classifier's own declared operating point?
  The tom-mma classifier says so in the alert's features (``op_is_candidate``, ``op_threshold``,
  ``op_gw_context``); for another publisher's alerts, the rule's score threshold decides, and a single
  detection without GW context never passes.

Examples
--------
>>> lvk_gate({"significant": True, "far": 1e-10, "group": "CBC", "properties": {"HasNS": 0.0},
...           "classification": {"BBH": 0.99, "Terrestrial": 0.01}}).reason
'HasNS 0.00 < 0.50: no neutron star, no kilonova'
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["LVK_GATE_SETTINGS", "GateVerdict", "classifier_verdict", "lvk_gate", "lvk_gate_for_event"]

from tom_mma.conf import DEFAULTS as _DEFAULTS

LVK_GATE_SETTINGS = {
    key: _DEFAULTS[key]
    for key in (
        "OBSERVATION_REQUIRE_SIGNIFICANT",
        "OBSERVATION_MAX_FAR_HZ",
        "OBSERVATION_GW_GROUPS",
        "OBSERVATION_MIN_HAS_NS",
        "OBSERVATION_MIN_HAS_REMNANT",
        "OBSERVATION_MAX_P_TERRESTRIAL",
    )
}
"""The ``TOM_MMA`` keys of :func:`lvk_gate` and their defaults (from :data:`tom_mma.conf.DEFAULTS`)."""


@dataclass(frozen=True)
class GateVerdict:
    """Whether a gate lets the follow-up go ahead, why, and what it looked at."""

    passes: bool
    reason: str
    details: dict[str, Any] = field(default_factory=dict)


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def lvk_gate(event: Mapping[str, Any], limits: Mapping[str, Any] | None = None) -> GateVerdict:
    """Whether an LVK event is worth a kilonova follow-up, from its notice's fields.

    Parameters
    ----------
    event
        ``significant``, ``far`` (Hz), ``group`` (``"CBC"`` or ``"Burst"``), ``properties`` (``HasNS``,
        ``HasRemnant``) and ``classification`` (``BNS``, ``NSBH``, ``BBH``, ``Terrestrial``), as in the
        notice (and in :class:`tom_mma.models.GWEvent`).
    limits
        The settings of :data:`LVK_GATE_SETTINGS` (missing keys take their defaults).

    Returns
    -------
    GateVerdict
        ``details`` holds the values compared. A field the notice does not give fails its check when the
        check is on (a limit of 0 for ``HasNS``/``HasRemnant``, 1 for ``p_terrestrial``, no FAR limit
        (``None``) or ``significant`` not required turn a check off).

    Examples
    --------
    >>> ms181101ab = {"significant": True, "far": 9.11e-14, "group": "CBC",
    ...               "properties": {"HasNS": 0.95, "HasRemnant": 0.91},
    ...               "classification": {"BNS": 0.95, "Terrestrial": 0.01}}
    >>> lvk_gate(ms181101ab).reason
    'CBC, significant, FAR 9.1e-14 Hz, HasNS 0.95, HasRemnant 0.91, p_terrestrial 0.01'
    >>> lvk_gate({**ms181101ab, "group": "Burst"}).reason
    'group Burst not followed (OBSERVATION_GW_GROUPS: CBC)'
    >>> lvk_gate({**ms181101ab, "far": 1e-5}, {"OBSERVATION_MAX_FAR_HZ": 1e-7}).passes
    False
    """
    cfg = {**LVK_GATE_SETTINGS, **(limits or {})}
    group = str(event.get("group") or "")
    properties = event.get("properties") or {}
    classification = event.get("classification") or {}
    far = _number(event.get("far"))
    has_ns, has_remnant = _number(properties.get("HasNS")), _number(properties.get("HasRemnant"))
    p_terrestrial = _number(classification.get("Terrestrial"))
    details = {
        "group": group,
        "significant": event.get("significant"),
        "far_hz": far,
        "has_ns": has_ns,
        "has_remnant": has_remnant,
        "p_terrestrial": p_terrestrial,
    }

    def no(reason: str) -> GateVerdict:
        return GateVerdict(False, reason, details)

    groups = [str(g) for g in cfg["OBSERVATION_GW_GROUPS"]]
    if group not in groups:
        return no(f"group {group or 'unknown'} not followed (OBSERVATION_GW_GROUPS: {', '.join(groups)})")
    if cfg["OBSERVATION_REQUIRE_SIGNIFICANT"] and event.get("significant") is not True:
        return no("not a significant alert (significant is not true)")
    max_far = cfg["OBSERVATION_MAX_FAR_HZ"]
    if max_far is not None and (far is None or far > float(max_far)):
        return no(f"FAR {'unknown' if far is None else f'{far:.2g} Hz'} above the limit {float(max_far):.2g} Hz")
    said = [group, "significant" if event.get("significant") is True else "not significant"]
    said.append(f"FAR {far:.2g} Hz" if far is not None else "FAR unknown")
    if group == "CBC":
        min_ns, min_remnant = float(cfg["OBSERVATION_MIN_HAS_NS"]), float(cfg["OBSERVATION_MIN_HAS_REMNANT"])
        max_terrestrial = float(cfg["OBSERVATION_MAX_P_TERRESTRIAL"])
        if min_ns > 0 and (has_ns is None or has_ns < min_ns):
            shown = "unknown" if has_ns is None else f"{has_ns:.2f}"
            return no(f"HasNS {shown} < {min_ns:.2f}: no neutron star, no kilonova")
        if min_remnant > 0 and (has_remnant is None or has_remnant < min_remnant):
            shown = "unknown" if has_remnant is None else f"{has_remnant:.2f}"
            return no(f"HasRemnant {shown} < {min_remnant:.2f}: no ejected matter to make a kilonova")
        if max_terrestrial < 1 and (p_terrestrial is None or p_terrestrial > max_terrestrial):
            shown = "unknown" if p_terrestrial is None else f"{p_terrestrial:.2f}"
            return no(f"p_terrestrial {shown} > {max_terrestrial:.2f}: probably not astrophysical")
        for name, value in (("HasNS", has_ns), ("HasRemnant", has_remnant), ("p_terrestrial", p_terrestrial)):
            if value is not None:
                said.append(f"{name} {value:.2f}")
    return GateVerdict(True, ", ".join(said), details)


def classifier_verdict(score: float, features: Mapping[str, Any], fallback_threshold: float) -> GateVerdict:
    """Whether a derived alert's classification passes.

    By the classifier's declared operating point if the alert carries it, the rule's threshold otherwise.

    Parameters
    ----------
    score
        The alert's ``kilonova_score``.
    features
        The alert's features. The tom-mma classifier adds ``op_is_candidate`` (1 or 0), ``op_threshold``
        and ``op_gw_context`` (1 when it used the GW event's time, distance and credible level).
    fallback_threshold
        ``TOM_MMA['OBSERVATION_SCORE_THRESHOLD']``, for alerts that declare no operating point.

    Examples
    --------
    >>> classifier_verdict(0.99, {"n_detections": 1.0}, 0.5).reason
    'score 0.990 from a single detection without GW context: never enough'
    >>> classifier_verdict(0.97, {"op_is_candidate": 1.0, "op_threshold": 0.96, "n_detections": 4.0,
    ...                           "span_days": 1.1, "op_gw_context": 1.0}, 0.5).reason
    "score 0.970 >= 0.960 (the classifier's operating point, with GW context); 4 detections over 1.1 d"
    """
    n_det = _number(features.get("n_detections"))
    span = _number(features.get("span_days"))
    evidence = ""
    if n_det is not None:
        evidence = f"; {n_det:.0f} detections" + (f" over {span:.1f} d" if span is not None else "")
    declared = _number(features.get("op_is_candidate"))
    with_gw = _number(features.get("op_gw_context")) == 1.0
    if declared is not None:
        threshold = _number(features.get("op_threshold"))
        shown = f"{threshold:.3f}" if threshold is not None else "its threshold"
        how = "with GW context" if with_gw else "without GW context"
        details = {"score": score, "threshold": threshold, "operating_point": "classifier", "gw_context": with_gw}
        if declared == 1.0:
            reason = f"score {score:.3f} >= {shown} (the classifier's operating point, {how}){evidence}"
            return GateVerdict(True, reason, details)
        reason = f"below the classifier's operating point (score {score:.3f}, {shown}, {how}){evidence}"
        return GateVerdict(False, reason, details)
    details = {"score": score, "threshold": fallback_threshold, "operating_point": "rule"}
    if n_det is not None and n_det < 2 and not with_gw:
        reason = f"score {score:.3f} from a single detection without GW context: never enough"
        return GateVerdict(False, reason, details)
    if score < fallback_threshold:
        return GateVerdict(False, f"score {score:.3f} below threshold {fallback_threshold:.3f}", details)
    return GateVerdict(True, f"score {score:.3f} >= {fallback_threshold:.3f}{evidence}", details)


def lvk_gate_for_event(superevent_id: str) -> GateVerdict:
    """:func:`lvk_gate` of a stored GW event with the ``TOM_MMA`` settings (the one database read here).

    An event this TOM does not hold passes, saying so (there is no notice to judge).
    """
    from tom_mma.conf import mma_settings
    from tom_mma.models import GWEvent

    fields = (
        GWEvent.objects.filter(superevent_id=superevent_id)
        .values("significant", "far", "group", "properties", "classification")
        .first()
    )
    if fields is None:
        # only a custom rule that knows a credible level without the event gets here: nothing to gate on
        return GateVerdict(True, f"no LVK notice stored for {superevent_id}: not gated", {})
    return lvk_gate(fields, {key: getattr(mma_settings, key) for key in LVK_GATE_SETTINGS})
