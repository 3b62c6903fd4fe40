"""``snewsdecide FILE... [--json]``: run SNEWS messages through the decider offline and print its alerts."""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import CommandError

from tom_mma.management.base import ExampleCommand
from tom_mma_broker.snews.decider import Decider
from tom_mma_broker.snews.files import read_messages
from tom_mma_broker.snews.messages import SnewsMessageError, parse_message
from tom_mma_broker.snews.service import decider_from_settings


class Command(ExampleCommand):
    help = (
        "Run files of SNEWS 2.0 observation messages (a JSON list, one JSON object, or one message per line) "
        "through the coincidence decider, in order, with TOM_MMA_BROKER's SNEWS_* settings, and print the "
        "alerts it would publish. Nothing is stored or published. A message arrives at its sent, machine or "
        "neutrino time (the first it has). Invalid messages are reported on stderr and skipped."
    )
    examples = (
        "./manage.py snewsdecide firedrill.json --json",
        "./manage.py snewsdecide day1.jsonl day2.jsonl --no-coincidence --window 10",
    )

    def add_arguments(self, parser):
        parser.add_argument("files", nargs="+", help="message files")
        parser.add_argument("--json", action="store_true", help="one JSON object per alert")
        parser.add_argument("--no-coincidence", action="store_true", help="also print the no-coincidence outcomes")
        parser.add_argument("--window", type=float, default=None, help="coincidence window in seconds")
        parser.add_argument("--expiry", type=float, default=None, help="cache lifetime in seconds")

    def handle(self, *args, **options):
        base = decider_from_settings()
        decider = Decider(
            window_s=base.window_s if options["window"] is None else options["window"],
            expiry_s=base.expiry_s if options["expiry"] is None else options["expiry"],
            heartbeat_window_s=base.heartbeat_window_s,
            server_tag=base.server_tag,
            rates_per_s=base.rates_per_s,
        )
        alerts = invalid = 0
        for path in options["files"]:
            try:
                items = list(read_messages(Path(path)))
            except (OSError, ValueError) as exc:
                raise CommandError(f"{path}: {exc}") from exc
            for where, raw in items:
                try:
                    decision = decider.process(parse_message(raw))
                except SnewsMessageError as exc:
                    invalid += 1
                    self.stderr.write(f"{path}:{where}: invalid: {exc}")
                    continue
                outputs = [a.to_dict() for a in decision.alerts]
                if options["no_coincidence"] and decision.no_coincidence is not None:
                    outputs.append(decision.no_coincidence.to_dict())
                for out in outputs:
                    alerts += out["alert_type"] != "NO_COINCIDENCE"
                    self.stdout.write(json.dumps(out) if options["json"] else _line(out))
        if not options["json"]:
            self.stdout.write(f"{alerts} alert(s), {invalid} invalid message(s)")


def _line(out: dict) -> str:
    if out["alert_type"] == "NO_COINCIDENCE":
        return f"NO_COINCIDENCE {out['detector_name']} {out['neutrino_time']} ({out['reason']})"
    pairs = ", ".join(f"{n} {t}" for n, t in zip(out["detector_names"], out["neutrino_times"], strict=True))
    return f"{out['alert_type']} sub-list {out['sub_list_number']}: {pairs}"
