"""Fink's livestream as a reliable stream: ZTF and Rubin topics, on confluent-kafka's ``subscribe()``.

Put ``tom_mma_broker.fink.FinkAlertStream`` in ``ALERT_STREAMS``. It is the reliable stream
(:class:`~tom_mma_broker.streams.ReliableHopskotchAlertStream`: offsets committed after the database
commit, archive, quarantine, backoff), reading with a consumer of its own instead of hop's, because

* Fink's messages carry no hop headers: the value is one schemaless Avro record and the Kafka key its
  writer schema as JSON (fink-client 12.3, ``AlertConsumer.process_message``); the handlers of
  :mod:`tom_mma.handlers.optical` read that form from the raw bytes and ``metadata.key``;
* ``subscribe()`` lets several ``readstreams`` processes share a topic's partitions in one consumer
  group (hop assigns every partition to each consumer), and ``session.timeout.ms`` can be set (fink-client
  cannot set it; a group join on the embedded broker takes about half of it).

OPTIONS (tom_fink's names are accepted, so that a TOM that used tom_fink changes only ``NAME``):

``URL``
    Fink's bootstrap servers, ``host:port[,host:port]`` or ``kafka://host:port``, or ``embedded``.
``TOPIC`` / ``TOPICS``
    One topic or a list (e.g. ``fink_kn_candidates_ztf``, ``fink_early_sn_candidates_lsst``).
``SURVEY``
    ``ztf`` (default) or ``lsst``: picks the handler of the topics that ``TOPIC_HANDLERS`` does not name.
``TOPIC_HANDLERS``
    Optional topic -> handler path. tom_fink's catch-all key ``fink.stream`` applies to every topic;
    tom_fink's ``alert_logger`` (a Target for the first alert of an object, later ones dropped) is
    replaced by tom-mma's handler for the survey.
``USERNAME``, ``PASSWORD``
    Fink credentials (SASL SCRAM-SHA-512 over plaintext, as fink-client connects); default the
    environment's ``FINK_USERNAME`` and ``FINK_PASSWORD``. Never logged.
``GROUP_ID``, ``START_POSITION``, ``IGNORE_TEST``
    As for the reliable stream (``START_POSITION`` default ``EARLIEST``, as fink-client's).
``SESSION_TIMEOUT_MS``
    The consumer's ``session.timeout.ms`` (default 10,000).
``MAX_POLL_NUMBER``, ``TIMEOUT``
    tom_fink's; accepted and ignored (this stream reads until stopped).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from confluent_kafka import Consumer
from django.core.exceptions import ImproperlyConfigured

from .conf import broker_settings
from .consumer import CONSUMER_TUNING
from .kafka import resolve_broker_url
from .streams import BrokerLost, ReliableHopskotchAlertStream

__all__ = ["FinkAlertStream", "SURVEY_HANDLERS"]

logger = logging.getLogger(__name__)

SURVEY_HANDLERS = {
    "ztf": "tom_mma.handlers.optical.fink_ztf_handler",
    "lsst": "tom_mma.handlers.optical.fink_lsst_handler",
}
_TOM_FINK_LOGGER = "tom_fink.alertstream.alert_logger"
_CATCH_ALL = "fink.stream"


def _kafka_url(url: Any) -> Any:
    if isinstance(url, str) and url and url != "embedded" and "://" not in url:
        return f"kafka://{url}"
    return url


def fink_topic_handlers(options: dict) -> dict[str, str | None]:
    """Topic -> handler path for a Fink stream's OPTIONS (see the module docstring).

    Examples
    --------
    >>> fink_topic_handlers({"TOPIC": "fink_kn_candidates_ztf",
    ...                      "TOPIC_HANDLERS": {"fink.stream": "tom_fink.alertstream.alert_logger"}})
    {'fink_kn_candidates_ztf': 'tom_mma.handlers.optical.fink_ztf_handler'}
    """
    survey = str(options.get("SURVEY", "ztf")).lower()
    if survey not in SURVEY_HANDLERS:
        raise ImproperlyConfigured(f"SURVEY must be one of {', '.join(SURVEY_HANDLERS)}, not {survey!r}")
    topics = options.get("TOPICS") or options.get("TOPIC") or []
    topics = [topics] if isinstance(topics, str) else list(topics)
    explicit = dict(options.get("TOPIC_HANDLERS") or {})
    catch_all = explicit.pop(_CATCH_ALL, None)
    if catch_all == _TOM_FINK_LOGGER:
        logger.info("tom_fink's alert_logger is replaced by %s", SURVEY_HANDLERS[survey])
        catch_all = None
    handlers: dict[str, str | None] = {t: catch_all or SURVEY_HANDLERS[survey] for t in topics}
    handlers.update(explicit)
    return handlers


class FinkAlertStream(ReliableHopskotchAlertStream):
    """Fink's livestream on the reliable stream (see the module docstring for the OPTIONS)."""

    required_keys = ["URL"]
    allowed_keys = [
        *ReliableHopskotchAlertStream.allowed_keys,
        "TOPIC",
        "SURVEY",
        "MAX_POLL_NUMBER",
        "TIMEOUT",
    ]  # fmt: skip (not TOPICS: AlertStream would set it as an attribute over the topics() method)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs = dict(kwargs)
        kwargs["URL"] = _kafka_url(kwargs.get("URL"))
        kwargs["TOPIC_HANDLERS"] = fink_topic_handlers(kwargs)
        kwargs.pop("TOPICS", None)
        kwargs.setdefault("START_POSITION", "EARLIEST")
        kwargs.setdefault("GROUP_ID", "tom-mma-fink")
        super().__init__(*args, **kwargs)  # SESSION_TIMEOUT_MS: the reliable stream's option

    def _credentials(self) -> tuple[str, str]:
        username = getattr(self, "username", None) or os.environ.get("FINK_USERNAME", "")
        password = getattr(self, "password", None) or os.environ.get("FINK_PASSWORD", "")
        return username, password

    def consumer_config(self) -> dict[str, Any]:
        """The confluent-kafka consumer configuration (with the credentials: never log it)."""
        try:
            base = resolve_broker_url(self.url)
        except ValueError as exc:
            raise ImproperlyConfigured(str(exc)) from exc
        config: dict[str, Any] = {
            "bootstrap.servers": base.removeprefix("kafka://").rsplit("@", 1)[-1],
            "group.id": self.group_id,
            "enable.auto.commit": False,  # offsets are committed after the database commit
            "enable.auto.offset.store": False,
            "auto.offset.reset": self.start_position.lower(),
            "session.timeout.ms": self.session_timeout_ms,
            "error_cb": self._on_kafka_error,
            **CONSUMER_TUNING,
        }
        username, password = self._credentials()
        if username and password and self.__dict__.get("auth") is not False:
            config.update({
                "security.protocol": getattr(self, "security_protocol", None) or "SASL_PLAINTEXT",
                "sasl.mechanism": getattr(self, "sasl_mechanism", None) or "SCRAM-SHA-512",
                "sasl.username": username, "sasl.password": password,
            })  # fmt: skip
        config.update(broker_settings.CONSUMER_CONFIG or {})
        return config

    def _available(self, consumer: Consumer) -> set[str]:
        return set(consumer.list_topics(timeout=10.0).topics)

    def _open(self) -> tuple[Any, list[str]]:
        consumer = Consumer(self.consumer_config())
        try:
            available = self._available(consumer)
            wanted = self.topics(available)
            topics = [t for t in wanted if t in available]
            self._missing_topics = sorted(set(wanted) - available)
            if self._missing_topics:
                logger.warning("Fink topics not on the broker (yet): %s", ", ".join(self._missing_topics))
            if not topics:
                raise BrokerLost(f"none of the topics {', '.join(wanted)} exists on {self.url}")
            self._broker_error = None
            consumer.subscribe(topics)
        except Exception:
            consumer.close()
            raise
        return _Subscribed(consumer), topics

    def _topics_appeared(self) -> bool:
        consumer = Consumer({k: v for k, v in self.consumer_config().items() if k != "group.id"} | {"group.id": "-"})
        try:
            available = self._available(consumer)
            return bool((set(self.topics(available)) & available) - set(self._reading))
        finally:
            consumer.close()


class _Subscribed:
    """The shape the reliable stream's loop expects of a consumer: ``._consumer`` and ``close()``."""

    def __init__(self, consumer: Consumer) -> None:
        self._consumer = consumer

    def close(self) -> None:
        self._consumer.close()
