"""Train, evaluate and save the kilonova classifier, deterministically from a seed.

Training data (never AT2017gfo): synthetic kilonovae (positives) and synthetic supernovae and other fast
transients (negatives) from :mod:`.synthetic`, and 20 of the 30 real ZTF supernovae shipped in ``data/``
(the other 10 are held out of the shipped model for its tests). Each light curve gives several training
rows: its prefixes ending at a random point after the first detection, since the model scores light
curves as they grow.

Metrics stored in the artifact's metadata: on a held-out quarter of the synthetic light curves; on the 10
held-out real supernovae; and a 5-fold cross-validation over the 30 real supernovae (each fold trained on
the synthetic training set and the other real supernovae), plus the scores of a synthetic-only model on all
30, which measures how well the simulations carry over to real data.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .datasets import load_alerce_sne
from .features import FEATURE_NAMES, Observation, detections, extract_features
from .model import DEFAULT_ARTIFACT, KilonovaModel, build_platform, save_artifact
from .synthetic import KILONOVA, NEGATIVE_KINDS, make_light_curve

__all__ = [
    "ARTIFACT_NAME",
    "VERSION",
    "TrainingConfig",
    "held_out_real_ids",
    "score_trajectory",
    "train",
    "train_and_save",
]

logger = logging.getLogger(__name__)

VERSION = "kilonova-v1"
ARTIFACT_NAME = "kilonova-v1"
DEFAULT_SEED = 20170817


@dataclass(frozen=True)
class TrainingConfig:
    """What the training run draws; the defaults make the shipped artifact."""

    seed: int = DEFAULT_SEED
    n_kilonovae: int = 1500
    n_negatives: int = 1400  # 200 of each of the seven kinds
    prefixes_per_curve: int = 5
    prefixes_per_real_sn: int = 25
    test_fraction: float = 0.25
    real_cv_folds: int = 5
    max_iter: int = 100
    learning_rate: float = 0.15


def held_out_real_ids(classes: dict[str, str]) -> list[str]:
    """The real supernovae kept out of the shipped model: every third one of each ALeRCE class (by id)."""
    held = []
    for label in sorted(set(classes.values())):
        ids = sorted(oid for oid, cls in classes.items() if cls == label)
        held.extend(ids[1::3])
    return sorted(held)


def _prefixes(observations: Sequence[Observation], rng: np.random.Generator, k: int) -> list[list[Observation]]:
    """Up to k prefixes of a light curve, each ending at a point on or after the first detection."""
    first = next(
        (n for n, obs in enumerate(observations) if detections([obs])),
        None,
    )
    if first is None:
        return []
    ends = np.arange(first + 1, len(observations) + 1)
    if len(ends) > k:
        ends = np.sort(rng.choice(ends, size=k, replace=False))
    return [list(observations[:end]) for end in ends]


def _rows(
    curves: Sequence[tuple[str, list[Observation]]], rng: np.random.Generator, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Feature matrix, labels, curve index and kind of the prefixes of some light curves."""
    features, labels, groups, kinds = [], [], [], []
    for index, (kind, observations) in enumerate(curves):
        for prefix in _prefixes(observations, rng, k):
            row = extract_features(prefix)
            features.append([row[name] for name in FEATURE_NAMES])
            labels.append(1 if kind == KILONOVA else 0)
            groups.append(index)
            kinds.append(kind)
    matrix = np.array(features, dtype=float).reshape(len(features), len(FEATURE_NAMES))
    return matrix, np.array(labels), np.array(groups), kinds


def _synthetic_curves(config: TrainingConfig, rng: np.random.Generator) -> list[tuple[str, list[Observation]]]:
    """Synthetic light curves with at least one detection, in a seeded order."""
    wanted = [KILONOVA] * config.n_kilonovae
    for n in range(config.n_negatives):
        wanted.append(NEGATIVE_KINDS[n % len(NEGATIVE_KINDS)])
    curves = []
    for kind in wanted:
        while True:  # too faint for its survey: draw again
            observations = make_light_curve(kind, rng)
            if detections(observations):
                break
        curves.append((kind, observations))
    return curves


def _estimator(config: TrainingConfig) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(
        max_iter=config.max_iter,
        learning_rate=config.learning_rate,
        max_leaf_nodes=15,
        max_bins=63,
        min_samples_leaf=40,
        l2_regularization=1.0,
        early_stopping=False,
        random_state=config.seed,
    )


def _balanced_weights(y: np.ndarray) -> np.ndarray:
    """Sample weights giving both classes the same total weight."""
    weights = np.ones(len(y))
    for label in (0, 1):
        sel = y == label
        weights[sel] = len(y) / (2.0 * max(sel.sum(), 1))
    return weights


def _ndet_bin(n: float) -> str:
    for low, high, name in ((1, 1, "1"), (2, 2, "2"), (3, 4, "3-4"), (5, 9, "5-9")):
        if low <= n <= high:
            return name
    return "10+"


def _synthetic_metrics(proba: np.ndarray, y: np.ndarray, kinds: list[str], ndet: np.ndarray) -> dict:
    from sklearn.metrics import brier_score_loss, roc_auc_score

    kinds_arr = np.array(kinds)
    by_bin: dict[str, dict[str, float]] = {}
    for name in ("1", "2", "3-4", "5-9", "10+"):
        sel = np.array([_ndet_bin(n) == name for n in ndet])
        pos, neg = sel & (y == 1), sel & (y == 0)
        entry = {"rows": int(sel.sum())}
        if pos.any() and neg.any():
            entry["auc"] = round(float(roc_auc_score(y[sel], proba[sel])), 4)
            entry["kilonova_recall_at_0.5"] = round(float((proba[pos] >= 0.5).mean()), 4)
            entry["false_positive_rate_at_0.5"] = round(float((proba[neg] >= 0.5).mean()), 4)
        by_bin[name] = entry
    return {
        "rows": int(len(y)),
        "auc": round(float(roc_auc_score(y, proba)), 4),
        "accuracy_at_0.5": round(float(((proba >= 0.5) == (y == 1)).mean()), 4),
        "brier": round(float(brier_score_loss(y, proba)), 4),
        "mean_score_by_kind": {kind: round(float(proba[kinds_arr == kind].mean()), 4) for kind in sorted(set(kinds))},
        "fraction_above_0.5_by_kind": {
            kind: round(float((proba[kinds_arr == kind] >= 0.5).mean()), 4) for kind in sorted(set(kinds))
        },
        "by_number_of_detections": by_bin,
    }


def _real_scores(estimator: Any, all_prefixes: dict[str, np.ndarray], ids: Sequence[str]) -> dict:
    """Per real supernova: mean, max and fraction >= 0.5 of the scores of all its prefixes."""
    result = {}
    for oid in ids:
        proba = estimator.predict_proba(all_prefixes[oid])[:, 1]
        result[oid] = {
            "prefixes": len(proba),
            "mean": round(float(proba.mean()), 4),
            "max": round(float(proba.max()), 4),
            "fraction_above_0.5": round(float((proba >= 0.5).mean()), 4),
        }
    return result


def _summary(scores: dict[str, dict[str, float]]) -> dict[str, float]:
    means = [s["mean"] for s in scores.values()]
    fractions = [s["fraction_above_0.5"] for s in scores.values()]
    return {
        "objects": len(scores),
        "mean_of_mean_scores": round(float(np.mean(means)), 4),
        "max_mean_score": round(float(np.max(means)), 4),
        "mean_fraction_above_0.5": round(float(np.mean(fractions)), 4),
    }


def train(config: TrainingConfig | None = None) -> tuple[Any, dict[str, Any]]:
    """Train and evaluate the classifier.

    Single-threaded: faster on a small shared machine, and the same result everywhere.

    Returns
    -------
    estimator, metadata
        The fitted scikit-learn estimator (the one evaluated, not a refit) and its metadata without the
        sha256 (added by :func:`~tom_mma_broker.classifier.model.save_artifact`).
    """
    # import the OpenMP runtime of scikit-learn first: threadpoolctl limits only libraries already loaded
    import sklearn.ensemble  # noqa: F401
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        return _train(config or TrainingConfig())


def _train(config: TrainingConfig) -> tuple[Any, dict[str, Any]]:
    import sklearn
    import skops

    started = time.perf_counter()
    rng = np.random.default_rng(config.seed)
    curves = _synthetic_curves(config, rng)
    logger.debug("generated %s synthetic light curves at %.1f s", len(curves), time.perf_counter() - started)
    order = rng.permutation(len(curves))
    n_test = int(round(config.test_fraction * len(curves)))
    test_curves = [curves[i] for i in sorted(order[:n_test])]
    train_curves = [curves[i] for i in sorted(order[n_test:])]
    x_syn, y_syn, _, _ = _rows(train_curves, rng, config.prefixes_per_curve)
    x_test, y_test, _, kinds_test = _rows(test_curves, rng, config.prefixes_per_curve)

    real = load_alerce_sne()
    classes = {oid: cls for oid, (cls, _) in real.items()}
    held = held_out_real_ids(classes)
    real_rows = {oid: _rows([("SN", obs)], rng, config.prefixes_per_real_sn)[0] for oid, (_, obs) in real.items()}
    # every prefix of every real supernova, to score them (not to train on)
    real_all = {oid: _rows([("SN", obs)], rng, 10**6)[0] for oid, (_, obs) in real.items()}

    def fit(real_ids: Sequence[str]) -> Any:
        parts = [x_syn] + [real_rows[oid] for oid in real_ids]
        x = np.vstack(parts)
        y = np.concatenate([y_syn, np.zeros(len(x) - len(x_syn), dtype=int)])
        return _estimator(config).fit(x, y, sample_weight=_balanced_weights(y))

    logger.debug("computed features at %.1f s", time.perf_counter() - started)
    training_real = [oid for oid in sorted(real) if oid not in held]
    estimator = fit(training_real)
    logger.debug("fitted the model at %.1f s", time.perf_counter() - started)
    proba_test = estimator.predict_proba(x_test)[:, 1]
    ndet_test = x_test[:, FEATURE_NAMES.index("n_detections")]
    held_scores = _real_scores(estimator, real_all, held)

    # cross-validation over the 30 real supernovae, folds stratified by class
    ordered = sorted(real, key=lambda oid: (classes[oid], oid))
    cv_scores: dict[str, dict[str, float]] = {}
    for fold in range(config.real_cv_folds):
        fold_ids = ordered[fold :: config.real_cv_folds]
        model = fit([oid for oid in ordered if oid not in fold_ids])
        cv_scores.update(_real_scores(model, real_all, fold_ids))
    synthetic_only = _real_scores(fit([]), real_all, sorted(real))
    logger.debug("cross-validated at %.1f s", time.perf_counter() - started)

    metadata = {
        "version": VERSION,
        "model": "sklearn HistGradientBoostingClassifier, class 1 = kilonova, balanced class weights",
        "estimator_params": {k: v for k, v in estimator.get_params().items() if k != "categorical_features"},
        "training_config": asdict(config),
        "training_data": {
            "positives": f"{config.n_kilonovae} synthetic two-component kilonovae (synthetic.py, docs/classifier.md)",
            "negatives": f"{config.n_negatives} synthetic transients ({', '.join(NEGATIVE_KINDS)}, equal "
            f"numbers) and {len(training_real)} real ZTF supernovae with ALeRCE labels (MIT)",
            "rows": "prefixes of each light curve ending at a random point after the first detection",
            "synthetic_train_rows": int(len(y_syn)),
            "real_train_rows": int(sum(len(real_rows[oid]) for oid in training_real)),
            "real_held_out": held,
            "not_used": "AT2017gfo / GW170817 photometry (kept for the sanity check)",
        },
        "metrics": {
            "synthetic_test": _synthetic_metrics(proba_test, y_test, kinds_test, ndet_test),
            "real_held_out": {"summary": _summary(held_scores), "objects": held_scores},
            "real_cross_validation": {
                "folds": config.real_cv_folds,
                "summary": _summary(cv_scores),
                "objects": dict(sorted(cv_scores.items())),
            },
            "real_scored_by_synthetic_only_model": {
                "summary": _summary(synthetic_only),
                "objects": synthetic_only,
            },
        },
        "built_on": build_platform(),
        "versions": {
            "scikit-learn": sklearn.__version__,
            "numpy": np.__version__,
            "skops": skops.__version__,
        },
    }
    logger.info("Trained %s in %.1f s", VERSION, time.perf_counter() - started)
    return estimator, metadata


def train_and_save(out_dir: str | Path | None = None, config: TrainingConfig | None = None) -> Path:
    """Train with :func:`train` and save the artifact; returns the ``.skops`` path."""
    estimator, metadata = train(config)
    out = Path(out_dir) if out_dir is not None else DEFAULT_ARTIFACT.parent
    return save_artifact(estimator, metadata, out, ARTIFACT_NAME)


def score_trajectory(model: KilonovaModel, observations: Sequence[Observation]) -> list[tuple[Observation, int, float]]:
    """Replay a light curve one point at a time: ``(point, detections so far, score)`` after each point.

    Points before the first g/r/i detection are skipped (there is nothing to score yet).
    """
    ordered = sorted(observations, key=lambda o: (o.mjd, o.band))
    result = []
    for end in range(1, len(ordered) + 1):
        prefix = ordered[:end]
        n_det = len(detections(prefix))
        if n_det:
            result.append((ordered[end - 1], n_det, model.classify(prefix).score))
    return result
