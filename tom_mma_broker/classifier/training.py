"""Train, calibrate, evaluate and save the kilonova classifier, deterministically from a seed.

Training data: synthetic light curves only (:mod:`.synthetic`), made from the seed: kilonovae of two
published model families and twelve kinds of contaminants, observed ZTF-like, Rubin-like or by a
heterogeneous follow-up. Nothing real is used to train, calibrate or choose the operating point:
AT2017gfo and the 30 ALeRCE supernovae shipped in ``data/`` are for evaluation only.

The simulated light curves are split three ways (by curve): **train** (the model), **calibration**
(isotonic calibration, the uncertainty tables and the operating point) and **test** (the metrics). Each
light curve gives several rows, prefixes ending at random points after the first detection (half of them
within 5 days of it), each twice: with its GW context and without.

The operating point: the smallest thresholds such that at most ``target_sn_pass_rate`` (without GW
context) and ``target_sn_pass_rate_gw`` (with it) of the calibration split's simulated supernovae pass at
any moment of their first ``early_days`` days, replayed point by point, under the evidence rules of
:func:`~tom_mma_broker.classifier.calibration.decide`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .calibration import fit_calibration, group_of
from .evaluation import (
    EVAL_DAYS,
    _choose_threshold,
    _early_replays,
    _feature_rows,
    _first_detection_index,
    _matrix,
    _reliability,
    _Scorer,
    _synthetic_metrics,
    _without_context,
    replay,
    score_trajectory,
)
from .features import Observation, detections
from .model import build_platform, save_artifact
from .synthetic import KILONOVA, NEGATIVE_KINDS, Example, make_example

__all__ = [
    "ARTIFACT_NAME",
    "EVAL_DAYS",
    "DEFAULT_SEED",
    "SUPERNOVA_KINDS",
    "VERSION",
    "TrainingConfig",
    "TRAINING_STAGES",
    "default_output_dir",
    "replay",
    "score_trajectory",
    "simulate",
    "split_examples",
    "train",
    "train_and_save",
]

logger = logging.getLogger(__name__)

VERSION = "kilonova-v2.1"
ARTIFACT_NAME = "kilonova-v2"
DEFAULT_SEED = 20170817
SUPERNOVA_KINDS = ("SN Ia", "SN Ibc", "SN II", "SN Ibn/Icn", "SLSN")
"""The contaminants the operating point is chosen on."""


# the evidence rules of the operating point (the thresholds are chosen by training), and the score from which
# a classification yields a derived alert: more likely a kilonova than not, under the prior of one half
EVIDENCE_RULES = {
    "alert_floor": 0.5,
    "min_detections": 2,
    "min_span_days": 0.1,
    "single_max_days_since_merger": 1.0,
    "single_abs_mag_range": [-17.5, -13.5],
    "single_max_credible_level": 0.9,
}


@dataclass(frozen=True)
class TrainingConfig:
    """What the training run draws; the defaults make the shipped artifact."""

    seed: int = DEFAULT_SEED
    n_kilonovae: int = 1500
    n_per_negative_kind: int = 130
    prefixes_per_curve: int = 6
    calibration_fraction: float = 0.25
    test_fraction: float = 0.2
    early_days: float = 5.0
    target_sn_pass_rate: float = 0.01
    target_sn_pass_rate_gw: float = 0.02
    max_iter: int = 150
    learning_rate: float = 0.1


def default_output_dir() -> Path:
    """Where ``trainclassifier`` writes by default: ``./kilonova-classifier`` under the working directory."""
    return Path.cwd() / "kilonova-classifier"


def simulate(config: TrainingConfig, rng: np.random.Generator) -> list[Example]:
    """Synthetic light curves with at least one detection, in a seeded order."""
    wanted = [KILONOVA] * config.n_kilonovae + [k for k in NEGATIVE_KINDS for _ in range(config.n_per_negative_kind)]
    examples = []
    for kind in wanted:
        while True:  # too faint for its survey: draw again
            example = make_example(kind, rng)
            if detections(example.observations):
                break
        examples.append(example)
    return examples


def split_examples(
    config: TrainingConfig, rng: np.random.Generator | None = None
) -> tuple[list[Example], list[Example], list[Example]]:
    """The simulated light curves of a training run, split by curve into train, calibration and test.

    With ``rng`` None, a generator is made from ``config.seed``: the same split as the training run's (the
    evaluation report uses it to score the test split again).
    """
    rng = np.random.default_rng(config.seed) if rng is None else rng
    examples = simulate(config, rng)
    order = rng.permutation(len(examples))
    n_test = int(round(config.test_fraction * len(examples)))
    n_cal = int(round(config.calibration_fraction * len(examples)))
    test = [examples[i] for i in sorted(order[:n_test])]
    cal = [examples[i] for i in sorted(order[n_test : n_test + n_cal])]
    fit_set = [examples[i] for i in sorted(order[n_test + n_cal :])]
    return fit_set, cal, test


def _prefix_ends(observations: Sequence[Observation], rng: np.random.Generator, k: int, early_days: float) -> list[int]:
    """Up to k prefix lengths, each ending at or after the first detection; half within ``early_days``."""
    first = _first_detection_index(observations)
    if first is None:
        return []
    t0 = observations[first].mjd
    ends = np.arange(first + 1, len(observations) + 1)
    early = np.array([observations[e - 1].mjd - t0 <= early_days for e in ends])
    chosen: list[int] = []
    for pool, count in ((ends[early], (k + 1) // 2), (ends, k)):
        remaining = [e for e in pool.tolist() if e not in chosen]
        take = min(len(remaining), count - (len(chosen) if pool is ends else 0))
        if take > 0:
            chosen += [int(e) for e in rng.choice(remaining, size=take, replace=False)]
    return sorted(chosen)


def _rows(
    examples: Sequence[Example], rng: np.random.Generator, config: TrainingConfig
) -> tuple[list, np.ndarray, np.ndarray]:
    """Feature rows (with and without context), labels and curve index of prefixes of some light curves."""
    prefixes, labels, curves = [], [], []
    for index, example in enumerate(examples):
        for end in _prefix_ends(example.observations, rng, config.prefixes_per_curve, config.early_days):
            prefixes.append((example.observations[:end], example.context))
            label = int(example.kind == KILONOVA)
            labels += [label, label]
            curves += [index, index]
    rows = []
    for row in _feature_rows(prefixes):  # one batch
        rows += [row, _without_context(row)]
    return rows, np.array(labels), np.array(curves)


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
    weights = np.ones(len(y))
    for label in (0, 1):
        sel = y == label
        weights[sel] = len(y) / (2.0 * max(sel.sum(), 1))
    return weights


#: The stages of a training run, in order, as :func:`train` reports them to its ``progress`` callback.
TRAINING_STAGES = (
    "simulating light curves",
    "computing features",
    "fitting",
    "calibrating",
    "evaluating",
)


def _no_progress(stage: str) -> None:
    """The default ``progress`` callback of :func:`train`: report nothing."""


def train(
    config: TrainingConfig | None = None, progress: Callable[[str], None] = _no_progress
) -> tuple[Any, dict[str, Any]]:
    """Train, calibrate and evaluate the classifier.

    Single-threaded: faster on a small shared machine, and the same result everywhere.

    Parameters
    ----------
    config : TrainingConfig, optional
        The run's settings (default :class:`TrainingConfig`).
    progress : callable, optional
        Called with the name of each stage of :data:`TRAINING_STAGES` as it begins (a command's progress bar).

    Returns
    -------
    estimator, metadata
        The fitted scikit-learn estimator and its metadata (calibration, operating point, metrics)
        without the checksums (added by :func:`~tom_mma_broker.classifier.model.save_artifact`).
    """
    # import the OpenMP runtime of scikit-learn first: threadpoolctl limits only libraries already loaded
    import sklearn.ensemble  # noqa: F401
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        return _train(config or TrainingConfig(), progress)


def _train(config: TrainingConfig, progress: Callable[[str], None]) -> tuple[Any, dict[str, Any]]:
    import sklearn
    import skops

    started = time.perf_counter()
    rng = np.random.default_rng(config.seed)
    progress(TRAINING_STAGES[0])
    fit_set, cal, test = split_examples(config, rng)
    logger.info(
        "simulated %s light curves in %.1f s", len(fit_set) + len(cal) + len(test), time.perf_counter() - started
    )

    progress(TRAINING_STAGES[1])
    x_rows, y, _ = _rows(fit_set, rng, config)
    cal_rows, y_cal, cal_curves = _rows(cal, rng, config)
    test_rows, y_test, test_curves = _rows(test, rng, config)
    progress(TRAINING_STAGES[2])
    estimator = _estimator(config).fit(_matrix(x_rows), y, sample_weight=_balanced_weights(y))
    logger.info("fitted on %s rows at %.1f s", len(y), time.perf_counter() - started)

    progress(TRAINING_STAGES[3])
    scorer = _Scorer(estimator, {})
    raw_cal = scorer.raw_proba(cal_rows)
    calibration = fit_calibration(raw_cal, y_cal, [group_of(r) for r in cal_rows], cal_curves)
    scorer.metadata["calibration"] = calibration
    sne = [e for e in cal if e.kind in SUPERNOVA_KINDS]
    replays = _early_replays(scorer, sne, config.early_days, EVIDENCE_RULES)
    operating_point = {
        **EVIDENCE_RULES,
        "threshold": _choose_threshold(replays[False], config.target_sn_pass_rate),
        "threshold_gw": _choose_threshold(replays[True], config.target_sn_pass_rate_gw),
        "chosen_on": f"{len(sne)} simulated supernovae of the calibration split ({', '.join(SUPERNOVA_KINDS)}), "
        f"replayed point by point over their first {config.early_days:g} days: at most "
        f"{config.target_sn_pass_rate:.0%} pass without GW context, {config.target_sn_pass_rate_gw:.0%} with it",
    }
    scorer.metadata["operating_point"] = operating_point
    logger.info("calibrated at %.1f s: %s", time.perf_counter() - started, operating_point)

    progress(TRAINING_STAGES[4])
    metrics = {
        "synthetic_test": _synthetic_metrics(scorer, test),
        "reliability_test": _reliability(scorer, test_rows, y_test, test_curves),
    }
    metadata = {
        "version": VERSION,
        "model": "sklearn HistGradientBoostingClassifier, class 1 = kilonova, balanced class weights; "
        "Platt calibration per evidence group (calibration.py)",
        "estimator_params": {k: v for k, v in estimator.get_params().items() if k != "categorical_features"},
        "training_config": asdict(config),
        "prior": "0.5: scores are kilonova probabilities when kilonovae and contaminants are equally likely a priori",
        "calibration": calibration,
        "operating_point": operating_point,
        "training_data": {
            "positives": f"{config.n_kilonovae} synthetic kilonovae, half Hotokezaka & Nakar (2020) via "
            "kilonova-heating-rate, half two-component Arnett/Villar (synthetic.py, docs/classifier.md)",
            "negatives": f"{config.n_per_negative_kind} synthetic light curves of each of {', '.join(NEGATIVE_KINDS)}",
            "surveys": "ZTF-like, Rubin-like, heterogeneous follow-up (synthetic.observe)",
            "curves": {"train": len(fit_set), "calibration": len(cal), "test": len(test)},
            "rows": {"train": len(y), "calibration": len(y_cal), "test": len(y_test)},
            "not_used": "AT2017gfo / GW170817 photometry and the 30 ALeRCE supernovae (evaluation only)",
        },
        "metrics": metrics,
        "built_on": build_platform(),
        "versions": {
            "scikit-learn": sklearn.__version__,
            "numpy": np.__version__,
            "skops": skops.__version__,
        },
    }
    logger.info("Trained %s in %.1f s", VERSION, time.perf_counter() - started)
    return estimator, metadata


def train_and_save(
    out_dir: str | Path | None = None,
    config: TrainingConfig | None = None,
    progress: Callable[[str], None] = _no_progress,
) -> Path:
    """Train with :func:`train` and save the artifact; returns the ``.skops`` path.

    ``out_dir`` defaults to :func:`default_output_dir` (never the package's own artifact); ``progress`` is
    :func:`train`'s.
    """
    estimator, metadata = train(config, progress)
    out = Path(out_dir) if out_dir is not None else default_output_dir()
    return save_artifact(estimator, metadata, out, ARTIFACT_NAME)
