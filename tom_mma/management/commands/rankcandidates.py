"""``manage.py rankcandidates SUPEREVENT [--json] [--rank] [--limit N]``: an event's candidates, most probable first."""

from __future__ import annotations

import json

from django.core.management.base import CommandError

from tom_mma.gw import ranking
from tom_mma.management.base import ExampleCommand
from tom_mma.models import GWEvent


class Command(ExampleCommand):
    help = (
        "Print the candidates (Targets) of a GW event in order of credible level: probability density per "
        "steradian, credible level (0..1) and, where the sky map has distance, the conditional distance."
    )
    examples = (
        "./manage.py rankcandidates MS170817a --limit 10",
        "./manage.py rankcandidates S190425z --rank --json   # re-rank every Target first",
    )

    def add_arguments(self, parser):
        parser.add_argument("superevent_id", help="e.g. S190425z or MS181101ab")
        parser.add_argument("--json", action="store_true", dest="as_json", help="one JSON object per line")
        parser.add_argument("--rank", action="store_true", help="(re-)rank every Target first")
        parser.add_argument("--limit", type=int, default=0, help="at most this many (default: all)")

    def handle(self, *args, superevent_id: str, as_json: bool = False, rank: bool = False, limit: int = 0, **options):
        try:
            event = GWEvent.objects.select_related("skymap").defer("skymap__fits").get(superevent_id=superevent_id)
        except GWEvent.DoesNotExist:
            raise CommandError(f"no GW event {superevent_id!r} in this TOM")
        if rank:
            ranking.rank_event(event.pk)
        candidates = ranking.candidates(event)
        if limit:
            candidates = candidates[:limit]
        has_distance = event.skymap is not None and event.skymap.distance_mean is not None
        if as_json:
            self._json(candidates, has_distance)
        else:
            self._table(event, candidates, has_distance)

    def _json(self, candidates, has_distance: bool) -> None:
        for c in candidates:
            row = {
                "name": c.target.name,
                "target_id": c.target_id,
                "ra": c.target.ra,
                "dec": c.target.dec,
                "probdensity": c.probdensity,
                "credible_level": c.credible_level,
            }
            if has_distance:
                row.update(distance_mean=c.distance_mean, distance_std=c.distance_std)
            row["retracted"] = c.retracted
            self.stdout.write(json.dumps(row))

    def _table(self, event: GWEvent, candidates, has_distance: bool) -> None:
        state = "" if event.is_active else f" ({event.state})"
        self.stdout.write(f"{event.superevent_id}{state}: candidates, most probable first")
        header = f"{'name':<24} {'ra':>10} {'dec':>10} {'probdensity/sr':>15} {'level':>7}"
        if has_distance:
            header += f" {'distance (Mpc)':>17}"
        self.stdout.write(header)
        for c in candidates:
            line = (
                f"{c.target.name:<24} {c.target.ra:>10.5f} {c.target.dec:>10.5f} {c.probdensity:>15.6g} "
                f"{c.credible_level:>7.4f}"
            )
            if has_distance:
                line += (
                    f" {c.distance_mean:>8.1f} ± {c.distance_std:<6.1f}"
                    if c.distance_mean is not None
                    else f" {'-':>17}"
                )
            self.stdout.write(line)
