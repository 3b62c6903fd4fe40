"""``./manage.py scorelightcurves FILE...``: score light curves from CSV files with the kilonova classifier."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from django.core.management.base import CommandError

from tom_mma.management.base import ExampleCommand
from tom_mma_broker.classifier import GWContext, NoDetectionsError, load_model
from tom_mma_broker.classifier.datasets import CSV_COLUMNS, LightCurveFileError, load_csv
from tom_mma_broker.classifier.features import detections
from tom_mma_broker.classifier.model import ArtifactError
from tom_mma_broker.conf import broker_settings

_MJD_EPOCH = dt.datetime(1858, 11, 17, tzinfo=dt.UTC)


def _mjd(iso: str) -> float:
    try:
        when = dt.datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError as exc:
        raise CommandError(f"--event-time {iso!r}: not an ISO 8601 time ({exc})") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return (when - _MJD_EPOCH).total_seconds() / 86400.0


class Command(ExampleCommand):
    help = (
        f"Score the light curves of CSV files (columns {', '.join(CSV_COLUMNS)}, optionally system): per object "
        "the kilonova probability, whether it passes the classifier's operating point, the model version and "
        "the features."
    )

    examples = (
        "./manage.py scorelightcurves candidates.csv --json",
        "./manage.py scorelightcurves at2017gfo.csv --event-time 2017-08-17T12:41:04Z --distance-mpc 40 --until-days 2",
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("files", nargs="+", metavar="FILE", help="CSV light-curve files.")
        parser.add_argument("--json", action="store_true", help="One JSON object per line.")
        parser.add_argument("--event-time", metavar="ISO", help="GW merger time (ISO 8601, UTC): GW context.")
        parser.add_argument("--distance-mpc", type=float, metavar="D", help="GW distance at the position (Mpc).")
        parser.add_argument(
            "--credible-level", type=float, metavar="P", help="Credible level of the position in the sky map (0-1)."
        )
        parser.add_argument(
            "--until-days", type=float, metavar="N", help="Only the points within N days of each first detection."
        )
        parser.add_argument("--artifact", help="Classifier artifact (default: TOM_MMA_BROKER['CLASSIFIER_ARTIFACT']).")

    def handle(self, *args, **options) -> None:
        if (options["distance_mpc"] is not None or options["credible_level"] is not None) and not options["event_time"]:
            raise CommandError("--distance-mpc and --credible-level need --event-time (the GW context's merger time)")
        context = None
        if options["event_time"]:
            context = GWContext(_mjd(options["event_time"]), options["distance_mpc"], options["credible_level"])
        try:
            model = load_model(options["artifact"] or broker_settings.CLASSIFIER_ARTIFACT)
        except ArtifactError as exc:
            raise CommandError(str(exc))
        for name in options["files"]:
            try:
                curves = load_csv(Path(name))
            except (OSError, LightCurveFileError) as exc:
                raise CommandError(str(exc))
            for object_id, observations in curves.items():
                self._score(model, object_id, observations, context, options)

    def _score(self, model, object_id, observations, context, options) -> None:
        until = options["until_days"]
        dets = detections(observations)
        if until is not None and dets:
            first = min(o.mjd for o in dets)
            observations = [o for o in observations if o.mjd <= first + until]
        try:
            result = model.classify(observations, context)
        except NoDetectionsError as exc:
            if options["json"]:
                row = {"object_id": object_id, "kn_score": None, "is_candidate": False,
                       "model_version": model.version, "n_detections": 0, "error": str(exc)}  # fmt: skip
                self.stdout.write(json.dumps(row))
            else:
                self.stdout.write(f"{object_id}: not scored: {exc}")
            return
        if options["json"]:
            row = {
                "object_id": object_id,
                "kn_score": result.score,
                "is_candidate": result.is_candidate,
                "model_version": result.model_version,
                "n_detections": result.evidence["n_detections"],
                "score_interval": list(result.score_interval),
                "reason": result.reason,
                "evidence": result.evidence,
                "features": result.features,
            }
            self.stdout.write(json.dumps(row, allow_nan=False))
            return
        low, high = result.score_interval
        verdict = "CANDIDATE" if result.is_candidate else "not a candidate"
        self.stdout.write(
            f"{object_id}: kilonova probability {result.score:.3f} (90% {low:.2f}-{high:.2f}), {verdict}: "
            f"{result.reason} [{result.model_version}]"
        )
        ev = result.evidence
        self.stdout.write(
            f"  {ev['n_detections']} detections in {', '.join(ev['bands'])} over {ev['span_days']:.2f} d; "
            f"GW context {'used' if ev['gw_context'] else 'not given'}"
            + (f"; bands not used: {', '.join(ev['unused_bands'])}" if ev["unused_bands"] else "")
        )
        shown = ", ".join(f"{k}={v:.3g}" for k, v in result.features.items() if v is not None)
        self.stdout.write(f"  features: {shown}")
