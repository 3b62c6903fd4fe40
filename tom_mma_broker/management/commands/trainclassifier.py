"""``./manage.py trainclassifier``: build the kilonova classifier artifact from the project's own simulations."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import CommandError

from tom_mma.management.base import ExampleCommand, StageProgress
from tom_mma_broker.classifier.model import DEFAULT_ARTIFACT, ArtifactError, load_model
from tom_mma_broker.classifier.training import (
    ARTIFACT_NAME,
    DEFAULT_SEED,
    TRAINING_STAGES,
    TrainingConfig,
    default_output_dir,
    train_and_save,
)


class Command(ExampleCommand):
    # the system checks include "the classifier artifact verifies": training must run when it does not
    requires_system_checks: list[str] = []
    help = (
        "Train the kilonova classifier on synthetic light curves made from a seed (the same seed gives the "
        f"same predictions) and write <out>/{ARTIFACT_NAME}.skops and .json, with an evaluation report if asked."
    )

    examples = (
        "./manage.py trainclassifier --out ./kilonova-classifier",
        "./manage.py trainclassifier --out ./kilonova-classifier --seed 7 --report docs/",
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--out",
            help=f"Output directory (default: {default_output_dir().name}/ under the current directory). "
            "Never the artifact shipped inside the package.",
        )
        parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"Seed (default {DEFAULT_SEED}).")
        parser.add_argument(
            "--report",
            metavar="DIR",
            help="Also write the evaluation report (Markdown and PNG plots) to DIR.",
        )
        parser.add_argument(
            "--okc",
            nargs="+",
            metavar="FILE",
            default=[],
            help="Open Kilonova Catalog JSON files of AT2017gfo to evaluate on in the report (never trained on).",
        )
        parser.add_argument("--no-progress", action="store_true", help="No progress report.")

    def handle(self, *args, **options) -> None:
        out = Path(options["out"]).resolve() if options["out"] else default_output_dir()
        if out == DEFAULT_ARTIFACT.parent.resolve():
            raise CommandError(
                f"{out} is the package's own artifact directory: give another --out "
                "(the shipped artifact is rebuilt by a release, see docs/classifier.md)"
            )
        with StageProgress(TRAINING_STAGES, "training", self.stderr, enabled=not options["no_progress"]) as stage:
            path = train_and_save(out, TrainingConfig(seed=options["seed"]), progress=stage)
        try:
            model = load_model(path)
        except ArtifactError as exc:
            raise CommandError(str(exc))
        op = model.metadata["operating_point"]
        self.stdout.write(f"Wrote {path} ({path.stat().st_size} bytes), version {model.version}")
        self.stdout.write(
            f"Operating point: score >= {op['threshold']} without GW context, >= {op['threshold_gw']} with it"
        )
        if options["report"]:
            from tom_mma_broker.classifier.report import write_report

            report = write_report(model, Path(options["report"]), okc_files=[Path(p) for p in options["okc"]])
            self.stdout.write(f"Wrote the evaluation report {report}")
        self.stdout.write(
            "To use it, set in your settings: TOM_MMA_BROKER = {..., "
            f'"CLASSIFIER_ARTIFACT": "{path}"}}, then restart the workers.'
        )
