"""``./manage.py trainkilonova``: regenerate the kilonova classifier artifact from the shipped data."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import CommandError

from tom_mma.management.base import ExampleCommand
from tom_mma_broker.classifier.model import ArtifactError, load_model
from tom_mma_broker.classifier.training import DEFAULT_SEED, TrainingConfig, score_trajectory, train_and_save


class Command(ExampleCommand):
    # the system checks include "the classifier artifact verifies": training must run when it does not
    requires_system_checks: list[str] = []
    help = (
        "Train the kilonova classifier (synthetic light curves and the shipped ZTF supernovae, "
        "deterministic for a seed) and write <out>/kilonova-v1.skops and .json; "
        "point TOM_MMA_BROKER['CLASSIFIER_ARTIFACT'] at the .skops file to use it."
    )

    examples = (
        "./manage.py trainkilonova --out ./kilonova-artifact",
        "./manage.py trainkilonova --out ./kilonova-artifact --seed 7 --sanity-okc GW170817-cowperthwaite.json",
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--out",
            default="kilonova-artifact",
            help="Output directory (default: ./kilonova-artifact; never the artifact shipped inside the package).",
        )
        parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"Seed (default {DEFAULT_SEED}).")
        parser.add_argument(
            "--sanity-okc",
            nargs="+",
            metavar="FILE",
            help="Open Kilonova Catalog JSON files (e.g. AT2017gfo) to replay with the new model.",
        )

    def handle(self, *args, **options) -> None:
        path = train_and_save(options["out"], TrainingConfig(seed=options["seed"]))
        try:
            model = load_model(path)
        except ArtifactError as exc:
            raise CommandError(str(exc))
        metrics = model.metadata["metrics"]
        self.stdout.write(f"Wrote {path} ({path.stat().st_size} bytes), version {model.version}")
        self.stdout.write(f'To use it: TOM_MMA_BROKER = {{..., "CLASSIFIER_ARTIFACT": "{path.resolve()}"}}')
        self.stdout.write(f"Synthetic test AUC {metrics['synthetic_test']['auc']}")
        for name in ("real_held_out", "real_cross_validation", "real_scored_by_synthetic_only_model"):
            self.stdout.write(f"{name}: {metrics[name]['summary']}")
        if options["sanity_okc"]:
            from tom_mma_broker.classifier.datasets import load_okc_photometry

            observations = load_okc_photometry([Path(p) for p in options["sanity_okc"]])
            for obs, n_det, score in score_trajectory(model, observations):
                self.stdout.write(f"{obs.mjd:.3f} {obs.band:>6} {n_det:4d} {score:.3f}")
