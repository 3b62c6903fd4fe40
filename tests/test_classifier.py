"""Tests of the kilonova classifier (``tom_mma_broker.classifier``): features, generator, artifact, scores.

Thresholds on scores were measured on the shipped artifact (docs/classifier.md) and set with a margin.
"""

from __future__ import annotations

import dataclasses
import doctest
import hashlib
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from tom_mma_broker.classifier import (
    FEATURE_NAMES,
    ArtifactError,
    Classification,
    NoDetectionsError,
    Observation,
    artifact_status,
    classify,
    datasets,
    extract_features,
    features,
    load_model,
    model,
    synthetic,
    training,
)
from tom_mma_broker.classifier.model import DEFAULT_ARTIFACT, TRUSTED_TYPES, save_artifact

DATA = Path(__file__).parent / "data" / "classifier"
MERGER_MJD = 57982.528524  # GW170817


def fade(band: str, rate: float, days: range, start: float = 19.0, t0: float = 60000.0) -> list[Observation]:
    return [Observation(t0 + d, band, start + rate * d, 0.05) for d in days]


@pytest.fixture(scope="module")
def shipped():
    return load_model()


@pytest.fixture(scope="module")
def at2017gfo_decam() -> list[Observation]:
    return datasets.load_okc_photometry(
        [DATA / "GW170817-cowperthwaite.json"], instrument="DECam", bands=("g", "r", "i")
    )


# ------------------------------------------------------------------------------------------------ features


@pytest.mark.parametrize("module", [features, synthetic, model])
def test_doctests(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_linear_fade_gives_its_rate():
    f = extract_features(fade("r", 0.5, range(4)))
    assert list(f) == list(FEATURE_NAMES)
    assert f["n_detections"] == 4 and f["n_bands"] == 1 and f["span_days"] == 3
    assert f["slope_r"] == pytest.approx(0.5) and f["slope_all"] == pytest.approx(0.5)
    assert f["fade_from_peak"] == pytest.approx(1.5) and f["days_since_peak"] == 3
    assert math.isnan(f["slope_g"]) and math.isnan(f["gr_first"]) and math.isnan(f["predet_gap_days"])


def test_common_slope_ignores_band_offsets_and_colours_follow_the_fade():
    # g fades at 1 mag/day, r at 1 mag/day, g-r = 0.5 constant; r observed 0.2 d after g
    lc = fade("g", 1.0, range(3), start=19.5) + fade("r", 1.0, range(3), start=19.2, t0=60000.2)
    f = extract_features(lc)
    assert f["slope_all"] == pytest.approx(1.0)
    # r moved back 0.2 d with the slope: 19.2 - 0.2 = 19.0, so g-r = 0.5
    assert f["gr_first"] == pytest.approx(0.5) and f["gr_last"] == pytest.approx(0.5)
    assert f["gr_rate"] == pytest.approx(0.0, abs=1e-9)


def test_reddening_colour_rate():
    lc = fade("g", 1.0, range(3)) + fade("r", 0.5, range(3))
    f = extract_features(lc)
    assert f["gr_first"] == pytest.approx(0.0) and f["gr_last"] == pytest.approx(1.0)
    assert f["gr_rate"] == pytest.approx(0.5)


def test_upper_limits_before_and_after():
    lc = [
        Observation(59990.0, "r", 21.0, upper_limit=True),
        Observation(59998.0, "r", 20.5, upper_limit=True),
        Observation(60000.0, "r", 19.0, 0.05),
        Observation(60001.0, "r", 19.8, 0.05),
        Observation(60003.0, "r", 21.8, upper_limit=True),
        Observation(60004.0, "r", 19.0, upper_limit=True),  # shallower than the source: no information
    ]
    f = extract_features(lc)
    assert f["predet_gap_days"] == pytest.approx(2.0) and f["predet_depth"] == pytest.approx(1.5)
    assert f["postdet_fade_rate"] == pytest.approx(1.0)  # (21.8 - 19.8) / 2 days


def test_order_and_unknown_bands_do_not_matter():
    lc = fade("g", 0.8, range(3)) + fade("i", 0.3, range(3))
    noisy = list(reversed(lc)) + [Observation(60000.5, "Ks", 17.0, 0.1), Observation(60001.0, "U", 18.0)]
    assert extract_features(noisy) == extract_features(lc)


def test_single_point_and_empty():
    one = extract_features([Observation(60000.0, "ztfg", 20.0, 0.1)])
    assert one["n_detections"] == 1 and one["span_days"] == 0
    assert (
        all(
            math.isnan(one[name])
            for name in ("slope_all", "slope_g", "gr_first", "fade_from_peak")
            if name != "fade_from_peak"
        )
        and one["fade_from_peak"] == 0
    )
    empty = extract_features([])
    assert empty["n_detections"] == 0 and sum(not math.isnan(v) for v in empty.values()) == 1


@pytest.mark.parametrize(
    "name, expected",
    [("g", "g"), ("ZTF_r", "r"), ("sdss-i", "i"), ("F625W", "r"), ("2", "r"), ("R", None), ("Ks", None)],
)
def test_canonical_band(name, expected):
    assert features.canonical_band(name) == expected


# ----------------------------------------------------------------------------------------------- generator


@pytest.mark.parametrize("kind", (synthetic.KILONOVA,) + synthetic.NEGATIVE_KINDS)
def test_generator_is_deterministic(kind):
    first = synthetic.make_light_curve(kind, np.random.default_rng(42))
    again = synthetic.make_light_curve(kind, np.random.default_rng(42))
    other = synthetic.make_light_curve(kind, np.random.default_rng(43))
    assert first == again and first != other
    assert all(obs.band in "gri" for obs in first)


def test_kilonovae_fade_fast_bluest_first_and_redden():
    rng = np.random.default_rng(0)
    t = np.array([1.5, 3.5])
    g_rates, i_rates, reddening = [], [], []
    for _ in range(40):
        kn, params = synthetic.kilonova_model(rng)
        assert 40 <= params["distance_mpc"] <= 200
        g, r, i = (kn(t, band) for band in "gri")
        g_rates.append((g[1] - g[0]) / 2)
        i_rates.append((i[1] - i[0]) / 2)
        reddening.append((g[1] - r[1]) - (g[0] - r[0]))
    assert 0.3 < np.median(g_rates) < 1.5
    assert np.median(g_rates) > np.median(i_rates) > 0
    # g-r grows from day 1.5 to 3.5 for most (measured 39 of 40; a blue floor can stall it)
    assert np.mean(np.array(reddening) > 0) >= 0.8 and np.median(reddening) > 0.1


def test_supernovae_are_slow():
    rng = np.random.default_rng(0)
    for _ in range(20):
        sn = synthetic.negative_model("SN Ia", rng)
        r = sn(np.array([20.0, 40.0]), "r")
        assert 0 < (r[1] - r[0]) / 20 < 0.12


# ------------------------------------------------------------------------------------------------ artifact


def test_shipped_artifact_verifies(shipped):
    data = DEFAULT_ARTIFACT.read_bytes()
    meta = json.loads(DEFAULT_ARTIFACT.with_suffix(".json").read_text())
    digest = hashlib.sha256(data).hexdigest()
    assert meta["sha256"] == digest and meta["version"] == "kilonova-v1"
    assert shipped.version == f"kilonova-v1+{digest[:12]}"
    assert meta["feature_names"] == list(FEATURE_NAMES)
    assert len(data) < 2_000_000
    assert "AT2017gfo" in meta["training_data"]["not_used"]
    assert load_model() is shipped  # loaded once per process
    ok, message = artifact_status()
    assert ok and shipped.version in message


@pytest.fixture
def artifact_copy(tmp_path) -> Path:
    for suffix in (".skops", ".json"):
        shutil.copy(DEFAULT_ARTIFACT.with_suffix(suffix), tmp_path / f"kn{suffix}")
    return tmp_path / "kn.skops"


def test_tampered_artifact_is_rejected(artifact_copy):
    assert load_model(artifact_copy).version == load_model().version
    data = bytearray(artifact_copy.read_bytes())
    data[len(data) // 2] ^= 0x01
    artifact_copy.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="sha256"):
        load_model(artifact_copy)
    ok, message = artifact_status(artifact_copy)
    assert not ok and "altered" in message


def test_missing_artifact_or_metadata(artifact_copy, tmp_path):
    ok, message = artifact_status(tmp_path / "nothing.skops")
    assert not ok and "missing" in message
    artifact_copy.with_suffix(".json").unlink()
    with pytest.raises(ArtifactError, match="missing"):
        load_model(artifact_copy)


def test_artifact_for_other_features_is_rejected(artifact_copy):
    meta_path = artifact_copy.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    meta["feature_names"] = meta["feature_names"][:-1]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="other features"):
        load_model(artifact_copy)


def test_untrusted_types_are_refused(tmp_path):
    import skops.io
    from sklearn.preprocessing import FunctionTransformer

    data = skops.io.dumps(FunctionTransformer(func=json.dumps))
    with pytest.raises(ArtifactError, match="refuse"):
        save_artifact(FunctionTransformer(func=json.dumps), {"version": "x"}, tmp_path, "evil")
    # written by hand with a matching checksum: loading still refuses the type
    (tmp_path / "evil.skops").write_bytes(data)
    meta = {"version": "x", "sha256": hashlib.sha256(data).hexdigest(), "feature_names": list(FEATURE_NAMES)}
    (tmp_path / "evil.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="cannot be loaded"):
        load_model(tmp_path / "evil.skops")
    assert "json.dumps" not in TRUSTED_TYPES


# -------------------------------------------------------------------------------------------------- scores


def test_classify_returns_json_ready_result(shipped):
    result = classify(fade("g", 1.0, range(3)) + fade("r", 0.6, range(3)))
    assert isinstance(result, Classification)
    assert 0.0 <= result.score <= 1.0 and result.model_version == shipped.version
    assert list(result.features) == list(FEATURE_NAMES)
    assert result.features["ri_first"] is None
    json.dumps(dataclasses.asdict(result), allow_nan=False)


@pytest.mark.parametrize(
    "observations",
    [[], [Observation(60000.0, "r", 21.0, upper_limit=True)], [Observation(60000.0, "Ks", 18.0, 0.1)]],
)
def test_no_detection_is_a_value_error(observations):
    with pytest.raises(NoDetectionsError):
        classify(observations)
    assert issubclass(NoDetectionsError, ValueError)


def test_at2017gfo_decam_scores_high(shipped, at2017gfo_decam):
    trajectory = training.score_trajectory(shipped, at2017gfo_decam)
    assert len(trajectory) == len(at2017gfo_decam) == 25
    scores = [score for _, _, score in trajectory]
    # measured: 0.62 on the first point, 0.73-0.87 on points 2-5, >= 0.98 from the 6th on
    assert min(scores) >= 0.5
    assert min(score for _, n, score in trajectory if n >= 6) >= 0.9


def test_held_out_real_supernovae_score_low(shipped):
    real = datasets.load_alerce_sne()
    held = shipped.metadata["training_data"]["real_held_out"]
    assert held == training.held_out_real_ids({oid: cls for oid, (cls, _) in real.items()})
    assert len(held) == 10
    means, finals, above = [], [], []
    for oid in held:
        scores = [score for _, _, score in training.score_trajectory(shipped, real[oid][1])]
        means.append(np.mean(scores))
        finals.append(scores[-1])
        above.extend(score >= 0.5 for score in scores)
    # measured: mean of per-object mean scores 0.11, 8% of all prefixes >= 0.5, final scores all < 0.1
    assert np.mean(means) < 0.25
    assert np.mean(above) < 0.2
    assert max(finals) < 0.3
    assert shipped.metadata["metrics"]["real_held_out"]["summary"]["mean_of_mean_scores"] == pytest.approx(
        np.mean(means), abs=0.01
    )


# ------------------------------------------------------------------------------------------------ training


def test_training_is_deterministic_and_learns(tmp_path):
    config = training.TrainingConfig(
        seed=7, n_kilonovae=150, n_negatives=140, prefixes_per_curve=3, real_cv_folds=2, max_iter=30
    )
    first = training.train_and_save(tmp_path / "a", config)
    second = training.train_and_save(tmp_path / "b", config)
    assert first.read_bytes() == second.read_bytes()
    trained = load_model(first)
    metrics = trained.metadata["metrics"]
    assert metrics["synthetic_test"]["auc"] > 0.8
    assert metrics["real_cross_validation"]["summary"]["objects"] == 30


def _reference_prefixes(at2017gfo: list[Observation]) -> list[list[Observation]]:
    """A fixed set of light-curve prefixes: every prefix of AT2017gfo (DECam) and of the 30 ALeRCE supernovae."""
    curves = [at2017gfo] + [obs for _, obs in sorted(datasets.load_alerce_sne().values(), key=lambda c: c[1][0].mjd)]
    return [curve[:n] for curve in curves for n in range(1, len(curve) + 1) if features.detections(curve[:n])]


def _assert_same_metadata(new: object, old: object, where: str = "metadata") -> None:
    """The metadata agrees across machines: all but the file's digest and build platform; floats to 1e-9."""
    if isinstance(old, dict):
        assert isinstance(new, dict), where
        skip = {"sha256", "built_on"} if where == "metadata" else set()
        assert set(new) - skip == set(old) - skip, where
        for key in set(old) - skip:
            _assert_same_metadata(new[key], old[key], f"{where}.{key}")
    elif isinstance(old, list):
        assert isinstance(new, list) and len(new) == len(old), where
        for i, (a, b) in enumerate(zip(new, old, strict=True)):
            _assert_same_metadata(a, b, f"{where}[{i}]")
    elif isinstance(old, float) and not isinstance(old, bool):
        assert new == pytest.approx(old, rel=1e-9, abs=1e-12), where
    else:
        assert new == old, where


@pytest.mark.slow
def test_trainkilonova_reproduces_the_shipped_artifact(tmp_path, shipped, at2017gfo_decam):
    """Retraining gives the shipped model's scores and decisions, on any CPU.

    The artifact's bytes depend on the CPU's floating-point path (an AMD EPYC and an Intel Xeon give other
    bytes for the same predictions), so bytes are compared only where the shipped artifact says it was
    built on this very CPU with these very libraries.
    """
    import sklearn
    import skops
    from django.core.management import call_command

    from tom_mma.conf import mma_settings

    call_command("trainkilonova", out=str(tmp_path))
    retrained = load_model(tmp_path / "kilonova-v1.skops")
    rows = [extract_features(prefix) for prefix in _reference_prefixes(at2017gfo_decam)]
    assert len(rows) > 500
    new, old = retrained.predict_proba(rows), shipped.predict_proba(rows)
    assert np.max(np.abs(new - old)) <= 1e-9
    threshold = float(mma_settings.OBSERVATION_SCORE_THRESHOLD)
    assert ((new >= threshold) == (old >= threshold)).all()
    same_libraries = shipped.metadata["versions"] == {
        "scikit-learn": sklearn.__version__,
        "numpy": np.__version__,
        "skops": skops.__version__,
    }
    if same_libraries:
        _assert_same_metadata(retrained.metadata, shipped.metadata)
    if same_libraries and shipped.metadata.get("built_on") == model.build_platform():
        assert retrained.version == shipped.version
