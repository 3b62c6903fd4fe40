"""``replayalerts PATH... --topic TOPIC``: run alert files through the TOM's handler for a topic."""

from __future__ import annotations

from collections import Counter

from django.core.management.base import CommandError

from tom_mma.management.base import ExampleCommand, progress
from tom_mma_broker.conf import broker_settings
from tom_mma_broker.embedded import EmbeddedBrokerError
from tom_mma_broker.ingest import TOPIC_MAX_LENGTH, summarize
from tom_mma_broker.kafka import hop_auth
from tom_mma_broker.replay import alert_files, publish_files, replay_files


class Command(ExampleCommand):
    help = (
        "Run alert files (Avro, JSON, VOEvent XML, GCN text notices, or folders of them) through the "
        "handler that ALERT_STREAMS configures for TOPIC, on the stream's own code path (archive, dedup, "
        "quarantine). One line per message: handled, archived, duplicate, or quarantined with the "
        "reason. With --publish, send them to that Kafka topic instead."
    )
    examples = (
        "./manage.py replayalerts tests/data/lvk/MS181101ab-preliminary.avro --topic igwn.gwalert",
        "./manage.py replayalerts alerts/ --topic my-tom.photometry --publish   # to TOM_MMA_BROKER's KAFKA_URL",
    )

    def add_arguments(self, parser):
        parser.add_argument("paths", nargs="+", help="alert files or folders")
        parser.add_argument("--topic", required=True, help="the topic the files are replayed as")
        parser.add_argument("--publish", action="store_true", help="publish to the Kafka topic instead")
        parser.add_argument(
            "--url",
            default=None,
            help="Kafka URL for --publish (default: TOM_MMA_BROKER['KAFKA_URL'], with its KAFKA_USERNAME/PASSWORD)",
        )

    def handle(self, *args, **options):
        topic = options["topic"]
        if len(topic) > TOPIC_MAX_LENGTH:
            raise CommandError(f"a Kafka topic name has at most {TOPIC_MAX_LENGTH} characters")
        try:
            if options["publish"]:
                self._publish(options)
                return
            counts: Counter = Counter()
            files = list(alert_files(options["paths"]))
            for result in progress(replay_files(files, topic), len(files), "replaying"):
                counts[result.outcome] += 1
                self.stdout.write(result.line())
        except FileNotFoundError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(summarize(counts))

    def _publish(self, options):
        url = options["url"] or broker_settings.KAFKA_URL
        # SCRAM credentials of the TOM's broker settings (never printed); none: no authentication
        auth = hop_auth(broker_settings.KAFKA_USERNAME, broker_settings.KAFKA_PASSWORD, url=url)
        n = 0
        try:
            for path, message_id in publish_files(options["paths"], options["topic"], url, auth=auth):
                self.stdout.write(f"published   {path} as {message_id}")
                n += 1
        except EmbeddedBrokerError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"{n} messages published to {options['topic']}")
