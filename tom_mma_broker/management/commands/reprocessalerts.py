"""``reprocessalerts --topic T``: run archived messages again through the topic's handler as now configured."""

from __future__ import annotations

from collections import Counter

from django.core.management.base import CommandError
from django.utils.dateparse import parse_datetime
from django.utils.timezone import is_naive, make_aware

from tom_mma.management.base import ExampleCommand, progress
from tom_mma_broker.ingest import summarize
from tom_mma_broker.reprocess import REPROCESS_STATUSES, archived_messages, reprocess


def _when(value: str | None, name: str):
    if value is None:
        return None
    parsed = parse_datetime(value) if "T" in value or " " in value else parse_datetime(f"{value}T00:00:00")
    if parsed is None:
        raise CommandError(f"--{name}: not an ISO date or time: {value!r} (e.g. 2026-12-01 or 2026-12-01T18:00Z)")
    return make_aware(parsed) if is_naive(parsed) else parsed


class Command(ExampleCommand):
    help = (
        "Run archived messages of a topic again through the handler that ALERT_STREAMS configures for it "
        "now, in archive order: messages archived while the topic had no handler, quarantined ones after a "
        "fix, or handled ones for a new handler. Idempotent (nothing is made twice). One line per message "
        "and a summary, as replayalerts prints them."
    )
    examples = (
        "./manage.py reprocessalerts --topic igwn.gwalert --status archived   # after adding its handler",
        "./manage.py reprocessalerts --topic my-tom.photometry --status quarantined --since 2026-12-01",
    )

    def add_arguments(self, parser):
        parser.add_argument("--topic", required=True, help="the topic whose archived messages run again")
        parser.add_argument("--since", help="only messages received at or after this ISO date/time (UTC if naive)")
        parser.add_argument("--until", help="only messages received before this ISO date/time (UTC if naive)")
        parser.add_argument(
            "--status",
            action="append",
            choices=[str(s) for s in REPROCESS_STATUSES],
            help="only messages with this archive status (repeatable; default: all three)",
        )

    def handle(self, *args, **options):
        since, until = _when(options["since"], "since"), _when(options["until"], "until")
        statuses = options["status"] or [str(s) for s in REPROCESS_STATUSES]
        total = archived_messages(options["topic"], since, until, statuses).count()
        counts: Counter = Counter()
        for result in progress(reprocess(options["topic"], since, until, statuses), total, "reprocessing"):
            counts[result.outcome] += 1
            self.stdout.write(result.line(result.envelope.describe()))
        self.stdout.write(summarize(counts))
