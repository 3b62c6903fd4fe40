"""The kilonova classifier of ``tom_mma_broker``: features, model artifact and scoring.

A pure-Python service (no Django, no database): the broker's tasks call :func:`classify` on the light
curve of a candidate after each new point and store the score with ``model_version`` and ``features``.

Examples
--------
>>> from tom_mma_broker.classifier import Observation, classify
>>> result = classify([Observation(60000.0, "g", 19.0, 0.05), Observation(60001.0, "g", 20.0, 0.08)])
>>> 0.0 <= result.score <= 1.0, result.model_version.startswith("kilonova-v2.1+"), result.is_candidate
(True, True, False)
"""

from .features import FEATURE_NAMES, GWContext, Observation, extract_features
from .model import (
    ArtifactError,
    KilonovaModel,
    KilonovaScore,
    NoDetectionsError,
    artifact_status,
    classify,
    load_model,
)

__all__ = [
    "FEATURE_NAMES",
    "GWContext",
    "ArtifactError",
    "KilonovaScore",
    "KilonovaModel",
    "NoDetectionsError",
    "Observation",
    "artifact_status",
    "classify",
    "extract_features",
    "load_model",
]
