"""``kafkabroker start|stop|status|topics``: the embedded Kafka broker (Tansu) of this TOM."""

from __future__ import annotations

import json

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from tom_mma_broker.conf import broker_settings
from tom_mma_broker.embedded import EmbeddedBrokerError, create_topics
from tom_mma_broker.kafka import embedded_broker


def configured_topics() -> list[str]:
    """Every explicit topic of ``ALERT_STREAMS`` plus ``TOM_MMA_BROKER['EMBEDDED_TOPICS']``."""
    topics = set(broker_settings.EMBEDDED_TOPICS)
    for config in getattr(settings, "ALERT_STREAMS", []) or []:
        topics.update(t for t in (config.get("OPTIONS", {}).get("TOPIC_HANDLERS") or {}) if "*" not in t)
    return sorted(topics)


class Command(BaseCommand):
    help = (
        "Start, stop or report the embedded Kafka broker (Tansu, memory only: stopping it loses every "
        "topic). `start` creates the topics named in ALERT_STREAMS and TOM_MMA_BROKER['EMBEDDED_TOPICS']."
    )

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["start", "stop", "status", "topics"])
        parser.add_argument("--port", type=int, help="port to listen on (default: a free one)")
        parser.add_argument("--topic", action="append", default=[], help="another topic to create")
        parser.add_argument("--json", action="store_true", help="status as JSON")

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
                info = broker.status()
                if info is None:
                    raise CommandError("the embedded Kafka broker is not running")
                created = create_topics(info.bootstrap, configured_topics() + options["topic"])
                self.stdout.write(f"created: {', '.join(created) or 'nothing new'}")
        except EmbeddedBrokerError as exc:
            raise CommandError(str(exc)) from exc
