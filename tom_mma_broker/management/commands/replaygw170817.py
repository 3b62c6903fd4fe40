"""``replaygw170817``: replay GW170817 (LVK notices, then AT2017gfo photometry) onto Kafka topics."""

from __future__ import annotations

import os
import socket
from collections import Counter

from django.conf import settings
from django.core.management.base import CommandError

from tom_mma.management.base import ExampleCommand
from tom_mma_broker.gw170817 import (
    ALL_SELECTION,
    DEFAULT_GW_TOPIC,
    DEFAULT_PHOTOMETRY_TOPIC,
    DEFAULT_SPEED,
    DEMO_SELECTION,
    GW_STREAM,
    PHOTOMETRY_STREAM,
    PhotometrySelection,
    ReplayProgress,
    available_sources,
    publish,
    replay,
    replay_messages,
)


def _names(values: list[str] | None) -> tuple[str, ...] | None:
    """``["a,b", "c"]`` -> ``("a", "b", "c")``; None stays None."""
    if values is None:
        return None
    return tuple(n.strip() for v in values for n in v.split(",") if n.strip())


def _check_reachable(bootstrap: str, timeout: float = 5.0) -> None:
    """Fail fast: librdkafka would retry an unreachable broker for minutes before reporting it."""
    host, _, port = bootstrap.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except (OSError, ValueError) as exc:
        raise CommandError(f"cannot reach the Kafka broker at {bootstrap}: {exc}") from exc


class Command(ExampleCommand):
    help = (
        "Replay GW170817 onto Kafka, in time order: the LVK notices (igwn.alerts Avro, real sky map, "
        "mock superevent MS170817a) then the real AT2017gfo photometry (tom-mma/photometry/v1 JSON), "
        "every message marked with the header x-tom-mma-replay: GW170817. See docs/gw170817-replay.md."
    )
    examples = (
        "./manage.py replaygw170817 --url embedded --speed 0",
        "./manage.py replaygw170817 --url kafka://kafka.example.org:9092 --all-photometry --bands g r i z",
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--url", help="kafka://host:port, or 'embedded' (default: settings.KAFKA_URL, else embedded)"
        )
        parser.add_argument("--gw-topic", default=DEFAULT_GW_TOPIC, help="topic of the LVK notices")
        parser.add_argument("--photometry-topic", default=DEFAULT_PHOTOMETRY_TOPIC, help="topic of the photometry")
        parser.add_argument(
            "--speed",
            type=float,
            default=DEFAULT_SPEED,
            help=f"seconds of the event per second of replay (default {DEFAULT_SPEED:g}: a day in 3 s; "
            "0: as fast as possible)",
        )
        parser.add_argument(
            "--sources",
            nargs="+",
            metavar="PAPER",
            help="Open Kilonova Catalog papers to replay, all their optical/NIR bands "
            f"(default: the DECam g/r/i points of cowperthwaite); known: {', '.join(available_sources())}",
        )
        parser.add_argument("--all-photometry", action="store_true", help="every optical/NIR detection of every paper")
        parser.add_argument("--bands", nargs="+", metavar="BAND", help="keep only these bands (e.g. g r i)")
        parser.add_argument("--upper-limits", action="store_true", help="replay non-detections too")
        parser.add_argument(
            "--username",
            default=os.environ.get("HOPSKOTCH_USERNAME", ""),
            help="SCRAM user name (default: $HOPSKOTCH_USERNAME; the password is read from "
            "$HOPSKOTCH_PASSWORD); none for the embedded broker",
        )
        parser.add_argument("--no-progress", action="store_true", help="no progress report")
        parser.add_argument("--dry-run", action="store_true", help="print the messages as JSON lines, no Kafka")

    def _selection(self, options) -> PhotometrySelection:
        sources = _names(options["sources"])
        if options["all_photometry"] and sources:
            raise CommandError("--all-photometry and --sources exclude each other")
        if options["all_photometry"]:
            selection = ALL_SELECTION
        elif sources:
            selection = PhotometrySelection(sources=sources, bands=None, instruments=None)
        else:
            selection = DEMO_SELECTION
        bands = _names(options["bands"])
        return PhotometrySelection(
            sources=selection.sources,
            bands=bands if bands else selection.bands,
            instruments=selection.instruments,
            upper_limits=options["upper_limits"],
        )

    def handle(self, *args, **options):
        from adc.errors import KafkaException as AdcKafkaException
        from confluent_kafka import KafkaException

        from tom_mma_broker.embedded import EmbeddedBrokerError, create_topics
        from tom_mma_broker.kafka import EMBEDDED, bootstrap_servers, hop_auth, open_producer, resolve_broker_url

        speed = options["speed"]
        if speed < 0:
            raise CommandError("--speed must be >= 0")
        try:
            messages = replay_messages(self._selection(options))
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        topics = {GW_STREAM: options["gw_topic"], PHOTOMETRY_STREAM: options["photometry_topic"]}
        counts = Counter(m.stream for m in messages)
        summary = (
            f"{len(messages)} messages: {counts[GW_STREAM]} LVK notices to {topics[GW_STREAM]}, "
            f"{counts[PHOTOMETRY_STREAM]} photometry points to {topics[PHOTOMETRY_STREAM]}"
        )

        def progress_report() -> ReplayProgress:
            # on the real stderr stream: tqdm rewrites its line, OutputWrapper would add newlines
            stream = getattr(self.stderr, "_out", self.stderr)
            return ReplayProgress(len(messages), stream, enabled=not options["no_progress"])

        if options["dry_run"]:
            with progress_report() as progress:

                def emit(message):
                    self.stdout.write(message.to_json_line(topics[message.stream]))
                    progress.update(message)

                replay(messages, emit, speed=speed)
            self.stderr.write(f"dry run: {summary}")
            return

        url = options["url"] or getattr(settings, "KAFKA_URL", None) or EMBEDDED
        auth = hop_auth(options["username"], os.environ.get("HOPSKOTCH_PASSWORD"), url=url)
        try:
            target = resolve_broker_url(url)
            _check_reachable(bootstrap_servers(target))
            if url == EMBEDDED or url.rstrip("/") == f"kafka://{EMBEDDED}":
                create_topics(bootstrap_servers(target), topics.values())
            with progress_report() as progress, open_producer(target, auth=auth) as producer:
                publish(messages, producer, topics, speed=speed, progress=progress)
        except (EmbeddedBrokerError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        except (KafkaException, AdcKafkaException) as exc:
            raise CommandError(f"Kafka error while replaying to {target}: {exc}") from exc
        self.stdout.write(f"replayed GW170817 to {target}: {summary}")
