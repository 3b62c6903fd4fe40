"""``ingestsuperevent SUPEREVENT_ID``: backfill a superevent's LVK notices from GraceDB through the ingest path."""

from __future__ import annotations

from collections import Counter
from typing import Any

from django.core.management.base import CommandError

from tom_mma.handlers.lvk import gcn_igwn_gwalert_handler, igwn_gwalert_handler
from tom_mma.management.base import ExampleCommand, progress
from tom_mma_broker.gracedb import GraceDBError, backfill_superevent
from tom_mma_broker.ingest import Outcome


def lvk_notice_handler(alert: Any, metadata: Any) -> Any:
    """tom_mma's LVK handler for the notice's form: Avro (``igwn.gwalert``) or JSON (GCN Kafka)."""
    if type(alert).__name__ == "AvroBlob" or (
        isinstance(getattr(alert, "content", None), bytes) and alert.content[:4] == b"Obj\x01"
    ):
        return igwn_gwalert_handler(alert, metadata)
    return gcn_igwn_gwalert_handler(alert, metadata)


class Command(ExampleCommand):
    help = (
        "Fetch a superevent's LVK notices (and the sky maps they carry) from GraceDB's public API "
        "(TOM_MMA_BROKER['GRACEDB_URL']) and run them, ordered by time_created, through the stream's ingest "
        "path: archive, dedup, handler, quarantine. Run it again: nothing is added twice."
    )
    examples = (
        "./manage.py ingestsuperevent S230518h",
        "./manage.py ingestsuperevent S230518h --url https://gracedb-playground.ligo.org/api/",
    )

    def add_arguments(self, parser):
        parser.add_argument("superevent_id", help="e.g. S230518h")
        parser.add_argument("--url", default=None, help="GraceDB's base URL (default: GRACEDB_URL)")
        parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request")

    def handle(self, *args, **options):
        counts: Counter = Counter()
        try:
            notices = backfill_superevent(options["superevent_id"], lvk_notice_handler, options["url"],
                                          timeout=options["timeout"])  # fmt: skip
            for notice, result in progress(notices, None, f"backfilling {options['superevent_id']}"):
                counts[result.outcome] += 1
                line = f"{result.outcome.value:<11} {notice.name} ({notice.alert_type or '?'} {notice.time_created})"
                if result.outcome is Outcome.QUARANTINED:
                    line += f": {result.reason}"
                self.stdout.write(line)
        except (GraceDBError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        summary = ", ".join(f"{counts[o]} {o.value}" for o in Outcome if counts[o])
        self.stdout.write(f"{sum(counts.values())} notices of {options['superevent_id']}: {summary or 'none'}")
