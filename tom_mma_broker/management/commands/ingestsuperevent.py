"""``ingestsuperevent SUPEREVENT_ID``: backfill a superevent's LVK notices from GraceDB through the ingest path."""

from __future__ import annotations

from collections import Counter

from django.core.management.base import BaseCommand, CommandError

from tom_mma_broker.gracedb import GraceDBError, backfill_superevent
from tom_mma_broker.ingest import Outcome


class Command(BaseCommand):
    help = (
        "Fetch a superevent's LVK notices (and the sky maps they carry) from GraceDB's public API "
        "(TOM_MMA_BROKER['GRACEDB_URL']) and run them, ordered by time_created, through the stream's ingest "
        "path: archive, dedup, handler, quarantine. Run it again: nothing is added twice."
    )

    def add_arguments(self, parser):
        parser.add_argument("superevent_id", help="e.g. S230518h")
        parser.add_argument("--url", default=None, help="GraceDB's base URL (default: GRACEDB_URL)")
        parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request")

    def handle(self, *args, **options):
        counts: Counter = Counter()
        try:
            for notice, result in backfill_superevent(options["superevent_id"], options["url"],
                                                      timeout=options["timeout"]):  # fmt: skip
                counts[result.outcome] += 1
                line = f"{result.outcome.value:<11} {notice.name} ({notice.alert_type or '?'} {notice.time_created})"
                if result.outcome is Outcome.QUARANTINED:
                    line += f": {result.reason}"
                self.stdout.write(line)
        except (GraceDBError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        summary = ", ".join(f"{counts[o]} {o.value}" for o in Outcome if counts[o])
        self.stdout.write(f"{sum(counts.values())} notices of {options['superevent_id']}: {summary or 'none'}")
