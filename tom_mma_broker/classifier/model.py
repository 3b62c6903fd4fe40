"""The kilonova model as a versioned artifact: save, verify, load once per process, classify.

An artifact is two files side by side: ``<name>.skops`` (a scikit-learn estimator in the skops format,
never pickle) and ``<name>.json`` (metadata: version, sha256 of the ``.skops`` file, feature names,
library versions, training data and metrics). :func:`load_model` checks the sha256 and the feature names
before it loads anything, and loads only the types listed in :data:`TRUSTED_TYPES`.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import threading
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .calibration import apply_calibration, decide, group_of, intervals
from .features import FEATURE_NAMES, FeatureBatch, GWContext, Observation, extract_features_many

__all__ = [
    "DEFAULT_ARTIFACT",
    "TRUSTED_TYPES",
    "ArtifactError",
    "KilonovaScore",
    "KilonovaModel",
    "NoDetectionsError",
    "artifact_status",
    "classify",
    "load_model",
    "save_artifact",
    "tables_sha256",
]

logger = logging.getLogger(__name__)

DEFAULT_ARTIFACT = Path(__file__).resolve().parent / "artifacts" / "kilonova-v2.skops"
"""The artifact shipped with the package."""

# The types skops does not trust by default that a HistGradientBoostingClassifier needs. Anything else in
# an artifact makes loading fail: the list lives in the code, never in the artifact it would vouch for.
TRUSTED_TYPES = ["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"]


class ArtifactError(Exception):
    """The classifier artifact is missing, altered, or does not match this code."""


class NoDetectionsError(ValueError):
    """The light curve has no detection in a band the classifier uses, so there is nothing to classify."""


@dataclass(frozen=True)
class KilonovaScore:
    """The kilonova score of a light curve, with what produced it.

    Parameters
    ----------
    score
        Calibrated probability (0-1) that the light curve is a kilonova, under the prior of the training
        mix (one half, see :mod:`~tom_mma_broker.classifier.calibration`): not the rate of kilonovae among
        real transients.
    model_version
        ``"<version>+<first 12 hex digits of the artifact's sha256>"``, e.g. ``"kilonova-v2+0123456789ab"``.
    features
        The features the model used (:data:`~tom_mma_broker.classifier.features.FEATURE_NAMES`), JSON
        serialisable: ``None`` where a feature could not be computed.
    score_interval
        The 90 % interval of the probability (wide for one to three points).
    is_candidate
        Whether the light curve passes the classifier's declared operating point.
    reason
        Why it passes or not, in words.
    evidence
        What the score rests on: ``n_detections``, ``bands``, ``span_days``, ``gw_context`` and
        ``unused_bands`` (bands the classifier cannot place; their points were not used).
    """

    score: float
    model_version: str
    features: dict[str, float | None]
    score_interval: tuple[float, float] = (0.0, 1.0)
    is_candidate: bool = False
    reason: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tables_sha256(metadata: dict[str, Any]) -> str:
    """sha256 of the decision tables in the metadata (calibration and operating point, canonical JSON).

    They decide as much as the estimator does, so they are checked like it (``tables_sha256``).
    """
    tables = {"calibration": metadata.get("calibration"), "operating_point": metadata.get("operating_point")}
    return _sha256(json.dumps(tables, sort_keys=True, separators=(",", ":")).encode())


def _normalised_zip(data: bytes) -> bytes:
    """The same skops archive in a canonical form, so that the same model gives the same bytes.

    skops names the array files and the ``__id__`` memo keys of ``schema.json`` after ``id()`` of the
    objects, and zip entries carry the time of writing: all three change from run to run. Ids and file
    names are renumbered in order of appearance (a one-to-one map, so shared references stay shared) and
    the timestamps fixed.
    """
    with zipfile.ZipFile(io.BytesIO(data)) as src:
        names = set(src.namelist())
        schema = json.loads(src.read("schema.json"))
        ids: dict[int, int] = {}
        files: dict[str, str] = {}

        def walk(node: Any) -> None:
            if isinstance(node, dict):
                for key, value in node.items():
                    if key == "__id__" and isinstance(value, int):
                        node[key] = ids.setdefault(value, len(ids))
                    elif key == "file" and isinstance(value, str) and value in names:
                        node[key] = files.setdefault(value, f"{len(files)}{Path(value).suffix}")
                    else:
                        walk(value)
            elif isinstance(node, list):
                for item in node:
                    walk(item)

        walk(schema)
        if set(files) != names - {"schema.json"}:
            raise ArtifactError("unexpected skops archive layout: files not referenced by schema.json")
        entries = [("schema.json", json.dumps(schema, indent=2).encode())]
        entries += sorted(((new, src.read(old)) for old, new in files.items()), key=lambda e: e[0])
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for name, content in entries:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            dst.writestr(info, content, compresslevel=9)
    return out.getvalue()


class KilonovaModel:
    """A loaded, verified kilonova classifier.

    Parameters
    ----------
    estimator
        A fitted scikit-learn classifier whose class 1 is "kilonova", trained on :data:`FEATURE_NAMES`.
    metadata
        The artifact's metadata (``version``, ``sha256``, ``feature_names``, ...).
    """

    def __init__(self, estimator: Any, metadata: dict[str, Any]) -> None:
        from threadpoolctl import ThreadpoolController

        self.estimator = estimator
        self.metadata = metadata
        # Scoring one light curve in parallel costs more than it saves: OpenMP threads spin-wait, ~100x
        # slower on a busy 2-core worker. Predictions run on one thread (the controller is made once).
        self._threads = ThreadpoolController()

    @property
    def version(self) -> str:
        """``"<version>+<first 12 hex of sha256>"``: what every result row stores."""
        return f"{self.metadata['version']}+{self.metadata['sha256'][:12]}"

    @property
    def operating_point(self) -> dict[str, Any]:
        """The declared operating point (see :func:`~tom_mma_broker.classifier.calibration.decide`)."""
        return dict(self.metadata["operating_point"])

    def _matrix(self, rows: Sequence[dict[str, float]]) -> np.ndarray:
        matrix = np.array([[row[name] for name in FEATURE_NAMES] for row in rows], dtype=float)
        return matrix.reshape(len(rows), len(FEATURE_NAMES))

    def _raw(self, matrix: np.ndarray) -> np.ndarray:
        if len(matrix) == 0:
            return np.zeros(0)
        with self._threads.limit(limits=1, user_api="openmp"):
            return self.estimator.predict_proba(matrix)[:, 1]

    def raw_proba(self, rows: Sequence[dict[str, float]]) -> np.ndarray:
        """Uncalibrated model outputs of feature dicts (as from :func:`extract_features`)."""
        return self._raw(self._matrix(rows))

    def predict_proba(self, rows: Sequence[dict[str, float]]) -> np.ndarray:
        """Calibrated kilonova probabilities of feature dicts (as from :func:`extract_features`)."""
        raw = self.raw_proba(rows)
        return apply_calibration(self.metadata.get("calibration", {}), raw, [group_of(row) for row in rows])

    def classify(self, observations: Sequence[Observation], context: GWContext | None = None) -> KilonovaScore:
        """Score a light curve; see :func:`classify` (a batch of one of :meth:`classify_many`)."""
        return self.classify_many([(observations, context)])[0]

    def classify_many(
        self, curves: Sequence[tuple[Sequence[Observation], GWContext | None]], *, skip_undetected: bool = False
    ) -> list[KilonovaScore | None]:
        """Score several light curves at once: one feature batch, one call of the model, intervals for all.

        Each score is the one :meth:`classify` gives the light curve alone.

        Parameters
        ----------
        curves
            ``(observations, context)`` per light curve.
        skip_undetected
            True: a light curve without a detection in a band the classifier uses gets ``None`` instead of
            an error.

        Raises
        ------
        NoDetectionsError
            When one of them has no detection in a band the classifier uses (and not ``skip_undetected``).
        """
        batch = extract_features_many(curves)
        n_detections = batch.matrix[:, FEATURE_NAMES.index("n_detections")]
        scored = np.flatnonzero(n_detections > 0)
        if len(scored) < len(curves) and not skip_undetected:
            k = int(np.flatnonzero(n_detections == 0)[0])
            raise NoDetectionsError(
                "the light curve has no detection in a band the classifier uses "
                f"(upper limits alone, or only bands it cannot place: {batch.unused_bands[k]})"
            )
        results: list[KilonovaScore | None] = [None] * len(curves)
        for k, result in zip(scored.tolist(), self._scores(batch, scored, curves), strict=True):
            results[k] = result
        return results

    def _scores(
        self, batch: FeatureBatch, rows: np.ndarray, curves: Sequence[tuple[Sequence[Observation], GWContext | None]]
    ) -> list[KilonovaScore]:
        matrix = batch.matrix[rows]
        raw = self._raw(matrix)
        tables = self.metadata.get("calibration", {})
        cleans = [
            {name: (None if value != value else value) for name, value in zip(FEATURE_NAMES, row, strict=True)}
            for row in matrix.tolist()
        ]
        groups = [group_of(clean) for clean in cleans]
        scores = apply_calibration(tables, raw, groups)
        lows, highs = intervals(tables, raw, groups, scores)
        op = self.metadata["operating_point"]
        results = []
        for i, (k, clean, score) in enumerate(zip(rows.tolist(), cleans, scores.tolist(), strict=True)):
            decision = decide(score, clean, op)
            evidence = {
                "n_detections": int(clean["n_detections"]),
                "bands": batch.bands[k],
                "span_days": round(float(clean["span_days"]), 6),
                "gw_context": curves[k][1] is not None,
                "unused_bands": batch.unused_bands[k],
            }
            results.append(
                KilonovaScore(
                    score=score,
                    model_version=self.version,
                    features=clean,
                    score_interval=(float(lows[i]), float(highs[i])),
                    is_candidate=decision.is_candidate,
                    reason=decision.reason,
                    evidence=evidence,
                )
            )
        return results


def build_platform() -> str:
    """The machine and CPU model an artifact is built on, as its metadata records it (``built_on``).

    An artifact's bytes are reproducible only on the same CPU model and libraries: the floating-point
    path differs between processors even where the predictions agree.

    Returns
    -------
    str
        ``"<machine> <CPU model name>"``, e.g. ``"x86_64 AMD EPYC"``; the model name is empty where
        ``/proc/cpuinfo`` does not say it.
    """
    import platform

    name = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.partition(":")[2].strip()
                break
    except OSError:
        name = platform.processor()
    return f"{platform.machine()} {name}".strip()


def _metadata_path(path: Path) -> Path:
    return path.with_suffix(".json")


def verify_checksum(path: str | Path | None = None) -> tuple[bool, str]:
    """Whether the artifact and its metadata exist and the file's sha256 matches, without loading it.

    Cheap enough for a system check on every ``manage.py`` call (the model itself loads in workers).

    Examples
    --------
    >>> verify_checksum()[0]
    True
    >>> verify_checksum("/nonexistent/kilonova.skops")[1].startswith("classifier artifact missing")
    True
    """
    resolved = Path(path).resolve() if path is not None else DEFAULT_ARTIFACT
    meta_path = _metadata_path(resolved)
    if not resolved.exists() or not meta_path.exists():
        return False, f"classifier artifact missing: {resolved} (or its metadata {meta_path.name})"
    try:
        metadata = json.loads(meta_path.read_text())
        expected = metadata["sha256"]
    except (ValueError, KeyError) as exc:
        return False, f"classifier metadata {meta_path} unreadable: {exc}"
    if metadata.get("tables_sha256") != tables_sha256(metadata):
        return False, f"classifier metadata {meta_path}: calibration or operating point altered (tables_sha256)"
    actual = _sha256(resolved.read_bytes())
    if actual != expected:
        return False, f"classifier artifact {resolved}: sha256 {actual[:12]}..., metadata says {expected[:12]}..."
    return True, f"classifier artifact {resolved.name} checksum ok"


def _load(path: Path) -> KilonovaModel:
    import skops.io

    meta_path = _metadata_path(path)
    try:
        data = path.read_bytes()
        metadata = json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ArtifactError(
            f"classifier artifact missing: {exc.filename} (run ./manage.py trainclassifier to make one)"
        )
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"classifier metadata {meta_path} is not valid JSON: {exc}")
    digest = _sha256(data)
    if digest != metadata.get("sha256"):
        raise ArtifactError(
            f"classifier artifact {path} has sha256 {digest}, its metadata {meta_path.name} says "
            f"{metadata.get('sha256')}: the file was altered or does not belong to this metadata"
        )
    if metadata.get("tables_sha256") != tables_sha256(metadata):
        raise ArtifactError(
            f"classifier metadata {meta_path}: its calibration or operating point was altered (tables_sha256)"
        )
    if list(metadata.get("feature_names", [])) != list(FEATURE_NAMES):
        raise ArtifactError(
            f"classifier artifact {path} was trained on other features than this code computes; "
            "retrain it with ./manage.py trainclassifier"
        )
    try:
        estimator = skops.io.loads(data, trusted=TRUSTED_TYPES)
    except Exception as exc:  # skops raises several types (untrusted types, bad zip, version errors)
        raise ArtifactError(f"classifier artifact {path} cannot be loaded: {exc}") from exc
    logger.info("Loaded kilonova classifier %s from %s", metadata.get("version"), path)
    return KilonovaModel(estimator, metadata)


_cache: dict[tuple[str, int, int], KilonovaModel] = {}
_cache_lock = threading.Lock()


def load_model(path: str | Path | None = None) -> KilonovaModel:
    """Load a classifier artifact, once per process (cached by path, size and modification time).

    Parameters
    ----------
    path
        The ``.skops`` file; its metadata is the ``.json`` file of the same name. Default: the artifact
        shipped with the package (:data:`DEFAULT_ARTIFACT`).

    Raises
    ------
    ArtifactError
        The file or its metadata is missing, the sha256 does not match, the features differ from this
        code's, or skops refuses the file (e.g. an untrusted type).
    """
    resolved = Path(path).resolve() if path is not None else DEFAULT_ARTIFACT
    try:
        stat = resolved.stat()
    except FileNotFoundError:
        raise ArtifactError(f"classifier artifact missing: {resolved} (run ./manage.py trainclassifier to make one)")
    key = (str(resolved), stat.st_size, stat.st_mtime_ns)
    with _cache_lock:
        model = _cache.get(key)
        if model is None:
            model = _load(resolved)
            # one entry per path: a replaced file replaces the cached model
            for old in [k for k in _cache if k[0] == key[0]]:
                del _cache[old]
            _cache[key] = model
    return model


def artifact_status(path: str | Path | None = None) -> tuple[bool, str]:
    """Whether the artifact loads and verifies, for a system check: ``(ok, message)``.

    Examples
    --------
    >>> ok, message = artifact_status("/nonexistent/kilonova.skops")
    >>> ok, message.startswith("classifier artifact missing")
    (False, True)
    """
    try:
        model = load_model(path)
    except ArtifactError as exc:
        return False, str(exc)
    return True, f"kilonova classifier {model.version} verified"


def classify(observations: Sequence[Observation], context: GWContext | None = None) -> KilonovaScore:
    """Kilonova probability of a (partial) light curve, with the shipped model.

    Parameters
    ----------
    observations
        Every point seen so far of one candidate: detections and upper limits, any bands, any order.
    context
        The GW event the candidate may belong to (merger time, distance, credible level), if any.

    Returns
    -------
    KilonovaScore
        Calibrated score with its interval, the operating point's decision and reason, model version,
        the features used and the evidence.

    Raises
    ------
    NoDetectionsError
        (a ``ValueError``) when no point is a detection in a band the classifier uses: there is no light
        curve to score yet. Callers skip the candidate until a detection arrives.
    ArtifactError
        The shipped artifact is missing or altered.
    """
    return load_model().classify(observations, context)


def save_artifact(estimator: Any, metadata: dict[str, Any], out_dir: str | Path, name: str) -> Path:
    """Save an estimator as ``<out_dir>/<name>.skops`` with its metadata ``<name>.json``.

    The zip archive skops writes is normalised (fixed timestamps) so that the same model gives the same
    bytes and the same sha256. Saving refuses a model whose types are not all in :data:`TRUSTED_TYPES`.
    """
    import skops.io

    data = _normalised_zip(skops.io.dumps(estimator))
    untrusted = set(skops.io.get_untrusted_types(data=data)) - set(TRUSTED_TYPES)
    if untrusted:
        raise ArtifactError(f"the model uses types load_model would refuse: {sorted(untrusted)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.skops"
    path.write_bytes(data)
    full = {**metadata, "sha256": _sha256(data), "feature_names": list(FEATURE_NAMES)}
    full["tables_sha256"] = tables_sha256(full)
    _metadata_path(path).write_text(json.dumps(full, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path
