"""What the broker tells the classifier about a candidate's GW event, and what it keeps of the answer.

- :func:`gw_context_for`: the :class:`~tom_mma_broker.classifier.GWContext` of a candidate that follows a GW
  event this TOM holds (``tom_mma``'s :class:`~tom_mma.models.GWEvent`): the merger time, and from the current
  sky map the credible level at the candidate's position and the conditional distance along its line of sight
  (the event's mean distance where the map has no distance layers).
- :func:`stored_features`: the features a classification row and its derived alert carry: the model's own,
  plus the classifier's decision at its declared operating point as numbers (``op_is_candidate``,
  ``op_threshold``, ``op_score_low``, ``op_score_high``, ``op_gw_context``), which the TOM's observation rule
  reads (:func:`tom_mma.followup_gates.classifier_verdict`).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from tom_mma.gw.ranking import event_position

from .classifier import GWContext, KilonovaModel, KilonovaScore

__all__ = ["alert_floor", "gw_context_for", "stored_features"]

logger = logging.getLogger(__name__)

_MJD_EPOCH = dt.datetime(1858, 11, 17, tzinfo=dt.UTC)


def _mjd(when: dt.datetime) -> float:
    return (when - _MJD_EPOCH).total_seconds() / 86400.0


def gw_context_for(candidate: Any) -> GWContext | None:
    """The GW context of a broker candidate, or None (no event named, unknown, retracted, or no merger time).

    Parameters
    ----------
    candidate
        A :class:`tom_mma_broker.models.Candidate` (``gw_event``, ``ra``, ``dec``).
    """
    if not getattr(candidate, "gw_event", None):
        return None
    position = event_position(candidate.gw_event, candidate.ra, candidate.dec)  # tom_mma's documented question
    if position is None:
        return None
    return GWContext(
        merger_mjd=_mjd(position.event_time), distance_mpc=position.distance_mpc, credible_level=position.credible_level
    )


def stored_features(result: KilonovaScore, model: KilonovaModel) -> dict[str, float | None]:
    """The model's features and its operating-point decision, all numbers (JSON and derived-alert ready)."""
    op = model.operating_point
    with_gw = bool(result.evidence.get("gw_context"))
    return {
        **result.features,
        "op_is_candidate": 1.0 if result.is_candidate else 0.0,
        "op_threshold": float(op["threshold_gw" if with_gw else "threshold"]),
        "op_score_low": float(result.score_interval[0]),
        "op_score_high": float(result.score_interval[1]),
        "op_gw_context": 1.0 if with_gw else 0.0,
    }


def alert_floor(model: KilonovaModel, setting: float | None) -> float:
    """The score from which a classification yields a derived alert.

    ``PUBLISH_FLOOR`` if set, else the classifier's declared ``alert_floor`` (0.5 where an artifact declares
    none).
    """
    if setting is not None:
        return float(setting)
    return float(model.operating_point.get("alert_floor", 0.5))
