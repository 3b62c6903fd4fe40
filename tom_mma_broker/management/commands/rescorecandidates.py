"""``./manage.py rescorecandidates``: score every candidate with the installed classifier, with a progress bar."""

from __future__ import annotations

from tom_mma.management.base import ExampleCommand
from tom_mma_broker.classifier import load_model
from tom_mma_broker.conf import broker_settings
from tom_mma_broker.rescoring import rescore, stale_candidates


class Command(ExampleCommand):
    help = (
        "Score the candidates that the installed classifier has not scored yet (after a new artifact), "
        "keeping the older model versions' scores as history."
    )

    examples = (
        "./manage.py rescorecandidates              # after installing a new classifier artifact",
        "./manage.py rescorecandidates --limit 100",
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--limit", type=int, help="At most this many candidates.")
        parser.add_argument("--no-progress", action="store_true", help="No progress bar.")

    def handle(self, *args, **options) -> None:
        version = load_model(broker_settings.CLASSIFIER_ARTIFACT).version
        pks = list(stale_candidates(version).values_list("pk", flat=True)[: options["limit"]])
        self.stdout.write(f"{len(pks)} candidates to score with {version}")

        def bar(done: int, total: int) -> None:
            width = 40
            filled = int(width * done / total)
            self.stdout.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total}", ending="")
            if done == total:
                self.stdout.write("")

        result = rescore(pks, progress=None if options["no_progress"] or not pks else bar)
        self.stdout.write(
            f"{result['classified']} classified, {result['skipped']} skipped (no detection yet, or scored already)"
        )
