"""A reliable Hopskotch/Kafka alert stream for tom-alertstreams' ``ALERT_STREAMS``.

Put ``tom_mma_broker.streams.ReliableHopskotchAlertStream`` where tom-alertstreams'
``HopskotchAlertStream`` stood; ``TOPIC_HANDLERS`` and the handler signature
``handler(alert, metadata)`` are the same. What it adds:

* at-least-once: offsets are committed only after the batch's database transaction (archive
  rows and the handlers' writes) has committed; a ``kill -9`` at any moment loses nothing;
* idempotent: every message is archived once (see :mod:`tom_mma_broker.ingest`), so a
  redelivered message runs no handler twice;
* poison messages are retried a bounded number of times and quarantined; the stream goes on;
* a lost broker (or missing topics, or a failing database) is retried forever with exponential
  backoff and full jitter, each attempt logged; a misconfigured stream (a URL that is not
  ``kafka://host:port`` or ``embedded``) raises ``ImproperlyConfigured`` at once instead;
* every message read is accounted for: hop test messages are archived with status ``test``
  rather than dropped;
* no network in the constructor, and it can run without authentication (``AUTH: False`` or
  no ``USERNAME``), as a local or embedded broker needs.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import KafkaException, TopicPartition
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, InterfaceError, close_old_connections
from django.utils.module_loading import import_string
from tom_alertstreams.alertstreams.alertstream import AlertStream

from tom_mma import deferred

from .conf import broker_settings
from .consumer import Backoff, Prefetcher, confluent_consumer, open_consumer
from .embedded import EmbeddedBrokerError
from .health import consumer_lag, record_heartbeat
from .ingest import HandlerMap, Ingestor, IngestResult, Outcome, record_stream_error
from .kafka import check_broker_url, hop_auth, resolve_broker_url

__all__ = ["ReliableHopskotchAlertStream", "BrokerLost"]

logger = logging.getLogger(__name__)

# librdkafka error codes that mean the broker is gone (not a problem with one message)
_BROKER_DOWN_CODES = {"_ALL_BROKERS_DOWN", "_TRANSPORT", "_RESOLVE", "_AUTHENTICATION", "_DESTROY"}


class BrokerLost(ConnectionError):
    """The Kafka broker cannot be reached."""


# failures of the broker, the database or the network: back off and reopen the stream. (A bad URL is refused
# earlier, as ImproperlyConfigured, which is never retried; anything else is logged with its traceback.)
_RECOVERABLE = (BrokerLost, EmbeddedBrokerError, DatabaseError, InterfaceError, OSError, KafkaException)


#: seconds a stopping stream waits for the work it deferred in eager mode (Celery's work is the worker's)
EAGER_DRAIN_S = 120.0


class ReliableHopskotchAlertStream(AlertStream):
    """The reliable stream (see the module docstring), with these OPTIONS in ``ALERT_STREAMS``.

    ``URL``
        ``kafka://host:port`` (topics are taken from ``TOPIC_HANDLERS``), or ``embedded``.
    ``GROUP_ID``
        Consumer group; offsets are committed under it.
    ``USERNAME``, ``PASSWORD``
        SCRAM credentials (from the environment). Without a password: the credentials hop stores for
        the broker's host (``hop auth add``; ``USERNAME`` picks one where several match); none stored
        means no authentication. The embedded broker and loopback hosts take none.
    ``AUTH``
        ``False`` to force no authentication.
    ``SASL_MECHANISM``, ``SECURITY_PROTOCOL``
        Default ``SCRAM-SHA-512`` over ``SASL_SSL`` (Hopskotch).
    ``TOPIC_HANDLERS``
        Topic (or regex with ``*``) -> dotted path of ``handler(alert, metadata)``, or ``None``
        to archive only.
    ``START_POSITION``
        ``EARLIEST`` or ``LATEST`` (default), for a group with no committed offset.
    ``IGNORE_TEST``
        Do not run the handler for messages with hop's ``_test`` header (default True, as hop
        ignores them): they are archived with status ``test`` and counted in ``TopicHealth``.
    ``GCN_CLIENT_ID``, ``GCN_CLIENT_SECRET``, ``GCN_DOMAIN``, ``OAUTH_TOKEN_ENDPOINT``
        GCN Kafka's OAuth client credentials (from the environment), as ``gcn-kafka`` configures them
        (:mod:`tom_mma_broker.gcn`); ``SECURITY_PROTOCOL`` defaults to ``sasl_ssl`` then.
    ``SHARE_PARTITIONS``
        ``True``: join ``GROUP_ID`` as a Kafka consumer-group member (``subscribe()``), so that several
        ``readstreams`` processes with this entry share the topics' partitions, and a process that dies has
        its partitions taken over by the others. Default ``False``: every partition is assigned to this
        process, as hop does (two processes then each read everything; the archive keeps one copy).
    ``SESSION_TIMEOUT_MS``
        The group member's ``session.timeout.ms`` with ``SHARE_PARTITIONS`` (default 10,000): how soon the
        others take over a dead process's partitions.
    """

    TOPIC_RECHECK_S = 60

    required_keys = ["URL", "TOPIC_HANDLERS"]
    allowed_keys = [
        "URL", "GROUP_ID", "USERNAME", "PASSWORD", "AUTH", "SASL_MECHANISM", "SECURITY_PROTOCOL",
        "TOPIC_HANDLERS", "START_POSITION", "IGNORE_TEST",
        "GCN_CLIENT_ID", "GCN_CLIENT_SECRET", "GCN_DOMAIN", "OAUTH_TOKEN_ENDPOINT",
        "SHARE_PARTITIONS", "SESSION_TIMEOUT_MS",
    ]  # fmt: skip

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("GROUP_ID", "tom-mma")
        super().__init__(*args, **kwargs)
        self.group_id = kwargs["GROUP_ID"]
        self.start_position = str(kwargs.get("START_POSITION", "LATEST")).upper()
        if self.start_position not in ("EARLIEST", "LATEST"):
            raise ImproperlyConfigured(f"START_POSITION must be EARLIEST or LATEST, not {self.start_position!r}")
        self.ignore_test = bool(kwargs.get("IGNORE_TEST", True))
        self.share_partitions = bool(kwargs.get("SHARE_PARTITIONS", False))
        self.session_timeout_ms = int(kwargs.get("SESSION_TIMEOUT_MS", 10000))
        try:
            check_broker_url(kwargs.get("URL"))
        except ValueError as exc:
            raise ImproperlyConfigured(f"the stream URL: {exc}") from exc
        self.handler_map = HandlerMap(self.alert_handler)
        if not self.handler_map.topics() and not self.handler_map.has_wildcards():
            raise ImproperlyConfigured("TOPIC_HANDLERS names no topic: the stream would read nothing")
        self._stop = threading.Event()
        self._broker_error: str | None = None
        self._missing_topics: list[str] = []
        self._reading: list[str] = []
        self.stats: dict[str, int] = {o.value: 0 for o in Outcome}
        #: (monotonic, process CPU) time when the first batch arrived: for throughput figures
        self.first_batch_at: tuple[float, float] | None = None

    # tom-alertstreams imports every handler path; None (archive only) must stay None
    def _process_topic_handlers(self) -> dict[str, Callable | None]:
        handlers: dict[str, Callable | None] = {}
        for topic, path in (self.topic_handlers or {}).items():
            handlers[topic] = import_string(path) if path else None
        return handlers

    # -- connection -------------------------------------------------------------------------
    def oauth_config(self) -> dict[str, Any]:
        """Librdkafka settings of GCN's OAuth client credentials (empty without ``GCN_CLIENT_ID``)."""
        client_id = getattr(self, "gcn_client_id", None)
        if not client_id:
            return {}
        from .gcn import GCN_DOMAIN, gcn_oauth_config

        return gcn_oauth_config(
            client_id,
            getattr(self, "gcn_client_secret", None),
            domain=getattr(self, "gcn_domain", None) or GCN_DOMAIN,
            token_endpoint=getattr(self, "oauth_token_endpoint", None),
            security_protocol=getattr(self, "security_protocol", None) or "sasl_ssl",
        )

    def _list_topics(self, base: str, auth: Any) -> set[str]:
        oauth = self.oauth_config()
        if not oauth:
            from hop.io import list_topics as hop_list_topics

            return set(hop_list_topics(base, auth=auth, timeout=10.0))
        from adc.kafka import parse_kafka_url
        from confluent_kafka.admin import AdminClient

        _, brokers, _ = parse_kafka_url(f"{base}/x")
        admin = AdminClient({"bootstrap.servers": ",".join(brokers), **oauth})
        return set(admin.list_topics(timeout=10.0).topics)

    def stream_auth(self) -> Any:
        """Hop auth from the options (``False`` for none). Credentials are never logged."""
        if self.__dict__.get("auth") is False or getattr(self, "gcn_client_id", None):
            return False
        return hop_auth(
            getattr(self, "username", None),
            getattr(self, "password", None),
            method=getattr(self, "sasl_mechanism", None) or "SCRAM-SHA-512",
            protocol=getattr(self, "security_protocol", None) or "SASL_SSL",
            url=self.url,
        )

    def topics(self, available: Iterable[str] = ()) -> list[str]:
        """Topics to read: the explicit ones plus those of ``available`` that a wildcard matches."""
        chosen = set(self.handler_map.topics())
        if self.handler_map.has_wildcards():
            chosen.update(t for t in available if not t.startswith("__") and self.handler_map.matches(t))
        return sorted(chosen)

    def _on_kafka_error(self, error: Any) -> None:
        name = error.name() if hasattr(error, "name") else str(error)
        if name in _BROKER_DOWN_CODES or (hasattr(error, "fatal") and error.fatal()):
            self._broker_error = f"{name}: {error.str() if hasattr(error, 'str') else error}"
        logger.warning("kafka client error: %s", error)

    def _open(self) -> tuple[Any, list[str]]:
        try:
            base = resolve_broker_url(self.url)
        except ValueError as exc:  # a URL that can never work: stop, do not retry forever
            raise ImproperlyConfigured(str(exc)) from exc
        auth = self.stream_auth()
        available = self._list_topics(base, auth)
        wanted = self.topics(available)
        topics = [t for t in wanted if t in available]
        self._missing_topics = sorted(set(wanted) - available)
        if self._missing_topics:
            logger.warning(
                "topics not on the broker (yet): %s; checking again every %d s",
                ", ".join(self._missing_topics),
                self.TOPIC_RECHECK_S,
            )
        if not topics:
            raise BrokerLost(f"none of the topics {', '.join(wanted)} exists on {base}")
        self._broker_error = None
        extra = dict(self.oauth_config() or {})
        if self.share_partitions:
            extra["session.timeout.ms"] = self.session_timeout_ms
        consumer = open_consumer(
            base, topics, self.group_id, auth, self.start_position, error_callback=self._on_kafka_error,
            extra=extra, share=self.share_partitions,
        )  # fmt: skip
        return consumer, topics

    def _topics_appeared(self) -> bool:
        """Whether a configured topic that was missing (or a new wildcard match) exists now."""
        available = set(self._list_topics(resolve_broker_url(self.url), self.stream_auth()))
        # a wanted topic that exists now and is not read yet (not the missing ones: they would reopen the
        # stream at every check)
        return bool((set(self.topics(available)) & available) - set(self._reading))

    # -- the loop ---------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask :meth:`listen` to return after the current batch."""
        self._stop.set()

    def listen(self, max_messages: int | None = None, idle_timeout: float | None = None) -> dict[str, int]:
        """Consume until stopped (forever by default).

        Parameters
        ----------
        max_messages : int, optional
            Return after this many messages (tests, benchmarks).
        idle_timeout : float, optional
            Return after this many seconds without a message.

        Returns
        -------
        dict
            Counts by outcome.
        """
        super().listen()
        # this thread only decodes, stores and enqueues: what its handlers defer (facility requests,
        # ranking, classification) runs in Celery, or in eager mode on a background thread
        with deferred.stream_thread():
            stats = self._listen(max_messages, idle_timeout)
        if not deferred.drain(timeout=EAGER_DRAIN_S):
            logger.warning("the stream stopped with deferred work still running in the background")
        return stats

    def _listen(self, max_messages: int | None, idle_timeout: float | None) -> dict[str, int]:
        ingestor = Ingestor(self.handler_map)
        backoff = Backoff(broker_settings.RECONNECT_BASE_S, broker_settings.RECONNECT_MAX_S)
        topics: list[str] = self.handler_map.topics()
        while not self._stop.is_set():
            consumer = None
            try:
                consumer, topics = self._open()
                self._reading = topics
                logger.info("reliable stream reading %s as group %s", ",".join(topics), self.group_id)
                done = self._consume(consumer, ingestor, backoff, max_messages, idle_timeout)
                if done:
                    break
            except ImproperlyConfigured:
                logger.error("the stream is misconfigured; it stops")
                raise
            except _RECOVERABLE as exc:
                self._backoff(backoff, topics, exc)
            except Exception as exc:
                # anything else is a bug or an unforeseen failure: readstreams runs each stream in a
                # thread, and a dead thread would stop ingest without a word. Log it with its
                # traceback, record it, back off and read again from the committed offsets.
                logger.exception("unexpected error in the stream; reopening it after a backoff")
                self._backoff(backoff, topics, exc)
            finally:
                if consumer is not None:
                    try:
                        consumer.close()
                    except Exception:  # noqa: BLE001 - closing a consumer of a dead broker may fail too
                        logger.debug("closing the consumer failed", exc_info=True)
                close_old_connections()
        return dict(self.stats)

    def _backoff(self, backoff: Backoff, topics: list[str], exc: BaseException) -> None:
        delay = backoff.next()
        message = f"{type(exc).__name__}: {exc}"
        logger.warning("stream unavailable (attempt %d): %s; retrying in %.1f s", backoff.attempt, message, delay)
        record_stream_error(topics, message)
        self._stop.wait(delay)

    def _consume(
        self, consumer: Any, ingestor: Ingestor, backoff: Backoff, max_messages: int | None, idle_timeout: float | None
    ) -> bool:
        # batches of database work come straight from the adc consumer's confluent_kafka.Consumer
        # (see open_consumer), not one message at a time as hop's read() would give them.
        # A prefetch thread fetches and decodes the next batch while this one is in the database
        # (the database waits release the GIL): fetch + decode overlap the transaction.
        kafka = confluent_consumer(consumer)
        prefetch = Prefetcher(kafka, broker_settings.BATCH_SIZE, broker_settings.BATCH_TIMEOUT_S, self.ignore_test)
        prefetch.start()
        self._prefetch = prefetch
        last_beat = None
        committed: dict[tuple[str, int], int] = {}  # the offsets committed (asynchronously) so far
        try:
            last_message = last_check = time.monotonic()
            while not self._stop.is_set():
                if self._broker_error:
                    raise BrokerLost(self._broker_error)
                if last_beat is None or time.monotonic() - last_beat > broker_settings.HEALTH_HEARTBEAT_S:
                    last_beat = time.monotonic()
                    self._heartbeat(kafka)
                if (self._missing_topics or self.handler_map.has_wildcards()) and (
                    time.monotonic() - last_check > self.TOPIC_RECHECK_S
                ):
                    last_check = time.monotonic()
                    if self._topics_appeared():
                        logger.info("new topics to read: reopening the stream")
                        return False
                batch = prefetch.next_batch()
                if batch is None:
                    if idle_timeout is not None and time.monotonic() - last_message > idle_timeout:
                        return True
                    continue
                messages, envelopes = batch
                last_message = time.monotonic()
                if self.first_batch_at is None:
                    self.first_batch_at = (last_message, time.process_time())
                results = ingestor.ingest(envelopes) if envelopes else []
                committed.update(self._commit(consumer, messages) or {})
                backoff.reset()
                self._count(results)
                if max_messages is not None and sum(self.stats.values()) >= max_messages:
                    return True
            return True
        finally:
            prefetch.halt()
            self._prefetch = None
            if sys.exc_info()[0] is None and not self._broker_error:
                # a clean return (not an error on its way out): the offsets committed for sure, then the lag as
                # this stream leaves it
                self._commit_now(kafka, committed)
                self._heartbeat(kafka)

    def _heartbeat(self, kafka: Any) -> None:
        """Note in the topics' health that this stream reads them, with their consumer lag."""
        try:
            lags = consumer_lag(kafka, timeout=2.0)
        except RuntimeError:  # a consumer closed under us: the heartbeat says listening, without lags
            lags = {}
        record_heartbeat(self._reading, self.group_id, lags)

    def _commit(self, consumer: Any, messages: list[Any]) -> dict[tuple[str, int], int]:
        """Commit the offset after the last message of each partition (the batch's database commit is done).

        Asynchronously, by the prefetch thread before its next fetch: the stream goes on to the next batch at
        once (librdkafka's commit, even an asynchronous one, waited ~13 ms here while the prefetch thread was
        inside a fetch). A commit that fails or is lost only makes those messages read again, and they are
        recognised as duplicates; the stream commits the last offsets synchronously when it stops
        (:meth:`_commit_now`). Returns them.
        """
        last: dict[tuple[str, int], int] = {}
        for message in messages:
            if message.error() is None:
                last[(message.topic(), message.partition())] = message.offset() + 1
        if last:
            offsets = [TopicPartition(t, p, o) for (t, p), o in last.items()]
            prefetch = getattr(self, "_prefetch", None)
            if prefetch is not None and prefetch.is_alive():
                prefetch.commit_later(offsets)
            else:
                confluent_consumer(consumer).commit(offsets=offsets, asynchronous=True)
        return last

    @staticmethod
    def _commit_now(kafka: Any, offsets: dict[tuple[str, int], int]) -> None:
        """Commit ``offsets`` synchronously (when the stream stops: the asynchronous commits may be in flight)."""
        if not offsets:
            return
        try:
            kafka.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()], asynchronous=False)
        except KafkaException as exc:  # the messages are read again, and recognised as duplicates
            logger.warning("the last offsets were not committed on stopping: %s", exc)

    def _count(self, results: list[IngestResult]) -> None:
        for result in results:
            self.stats[result.outcome.value] += 1
            if result.outcome is Outcome.QUARANTINED:
                logger.warning("alert %s quarantined: %s", result.envelope.key, result.reason)
