"""``kafkabroker start|stop|status|topics``: the embedded Kafka broker (Tansu) of this TOM."""

from __future__ import annotations

import json

from django.conf import settings
from django.core.management.base import CommandError

from tom_mma.management.base import ExampleCommand
from tom_mma_broker.conf import broker_settings
from tom_mma_broker.embedded import EmbeddedBrokerError, create_topics, list_topics
from tom_mma_broker.kafka import embedded_broker


def configured_topics() -> list[str]:
    """Every explicit topic of ``ALERT_STREAMS`` plus ``TOM_MMA_BROKER['EMBEDDED_TOPICS']``."""
    topics = set(broker_settings.EMBEDDED_TOPICS)
    for config in getattr(settings, "ALERT_STREAMS", []) or []:
        topics.update(t for t in (config.get("OPTIONS", {}).get("TOPIC_HANDLERS") or {}) if "*" not in t)
    return sorted(topics)


class Command(ExampleCommand):
    help = (
        "Start, stop or report the embedded Kafka broker (Tansu, memory only: stopping it loses every "
        "topic), or list its topics. `start` creates the topics named in ALERT_STREAMS and "
        "TOM_MMA_BROKER['EMBEDDED_TOPICS']; `topics --create` creates those (and each --topic) on a running one."
    )
    examples = (
        "./manage.py kafkabroker start            # prints its kafka:// URL",
        "./manage.py kafkabroker topics           # list the topics and their partitions",
        "./manage.py kafkabroker topics --create --topic my-tom.photometry",
        "./manage.py kafkabroker stop",
    )

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["start", "stop", "status", "topics"])
        parser.add_argument("--port", type=int, help="port to listen on (default: a free one)")
        parser.add_argument("--topic", action="append", default=[], help="another topic to create (repeatable)")
        parser.add_argument(
            "--create",
            action="store_true",
            help="with `topics`: create the configured topics and each --topic that do not exist yet",
        )
        parser.add_argument("--json", action="store_true", help="status or topics as JSON")

    def handle(self, *args, **options):
        broker = embedded_broker()
        action = options["action"]
        try:
            if action == "start":
                topics = configured_topics() + options["topic"]
                info = broker.start(topics, port=options["port"], partitions=broker_settings.EMBEDDED_PARTITIONS)
                self.stdout.write(f"embedded Kafka broker running: {info.url} (pid {info.pid}, log {info.log})")
                if topics:
                    self.stdout.write(f"topics: {', '.join(sorted(set(topics)))}")
            elif action == "stop":
                stopped = broker.stop()
                self.stdout.write(
                    "embedded Kafka broker stopped" if stopped else "embedded Kafka broker was not running"
                )
            elif action == "status":
                info = broker.status()
                if options["json"]:
                    self.stdout.write(json.dumps({"running": info is not None, **(info.__dict__ if info else {})}))
                elif info is None:
                    self.stdout.write("embedded Kafka broker: not running")
                else:
                    self.stdout.write(f"embedded Kafka broker: running at {info.url} (pid {info.pid})")
            elif action == "topics":
                self._topics(broker, options)
        except EmbeddedBrokerError as exc:
            raise CommandError(str(exc)) from exc

    def _topics(self, broker, options) -> None:
        info = broker.status()
        if info is None:
            raise CommandError("the embedded Kafka broker is not running: ./manage.py kafkabroker start")
        if options["create"]:
            wanted = configured_topics() + options["topic"]
            created = create_topics(info.bootstrap, wanted, partitions=broker_settings.EMBEDDED_PARTITIONS)
            self.stdout.write(f"created: {', '.join(created) or 'nothing new'}")
        elif options["topic"]:
            raise CommandError("--topic names a topic to create: add --create")
        topics = list_topics(info.bootstrap)
        if options["json"]:
            self.stdout.write(json.dumps(topics))
            return
        for name, partitions in topics.items():
            self.stdout.write(f"{name}  ({partitions} partition{'s' if partitions != 1 else ''})")
        self.stdout.write(f"{len(topics)} topics")
