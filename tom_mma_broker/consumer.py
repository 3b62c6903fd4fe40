"""The reliable stream's Kafka side: the consumer it reads with, batches fetched ahead, and its backoff.

:func:`open_consumer` builds an adc consumer with librdkafka settings hop cannot pass (:data:`CONSUMER_TUNING`,
``TOM_MMA_BROKER['CONSUMER_CONFIG']``); :func:`confluent_consumer` is the one place that reaches inside it;
:class:`Prefetcher` fetches and decodes the next batches while the database works on this one; :class:`Backoff`
paces reconnections.
"""

from __future__ import annotations

import dataclasses
import queue
import random
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from adc import consumer as adc_consumer
from adc.kafka import parse_kafka_url
from confluent_kafka import KafkaError, KafkaException

from tom_mma.hopmessages import header_value

from .conf import broker_settings
from .envelope import Envelope
from .kafka import is_local_host

__all__ = [
    "CONSUMER_TUNING",
    "LOCAL_TUNING",
    "Backoff",
    "ConsumerConfig",
    "Prefetcher",
    "confluent_consumer",
    "consumer_config",
    "open_consumer",
]


class Backoff:
    """Exponential backoff with full jitter: ``uniform(0, min(cap, base * 2**n))``.

    Examples
    --------
    >>> b = Backoff(base=1.0, cap=8.0, rng=random.Random(0))
    >>> [round(b.next(), 2) for _ in range(5)]
    [0.84, 1.52, 1.68, 2.07, 4.09]
    >>> b.reset(); b.attempt
    0
    """

    def __init__(self, base: float = 1.0, cap: float = 60.0, rng: random.Random | None = None):
        self.base = base
        self.cap = cap
        self.attempt = 0
        self._rng = rng or random.Random()

    def ceiling(self) -> float:
        """The largest delay the next attempt may get."""
        return min(self.cap, self.base * (2**self.attempt))

    def next(self) -> float:
        """The delay before the next attempt (and count it)."""
        delay = self._rng.uniform(0, self.ceiling())
        # never a tight loop: at least a tenth of the base
        delay = max(delay, self.base / 10)
        self.attempt += 1
        return delay

    def reset(self) -> None:
        """Start again from the first delay (after a success)."""
        self.attempt = 0


# librdkafka settings adc does not expose. fetch.queue.backoff.ms: once its local queue holds
# queued.min.messages (adc sets 1,000) or ~64 MB, librdkafka waits this long before fetching again
# (default 1,000 ms). With ~64 KB alerts the queue fills after ~1,000 messages and the consumer then
# starves for a second while the database works through them: measured here, 1,367/s -> 1,932/s
# for 3,000 ZTF alerts with 0.25 s of work per batch of 500 (librdkafka 2.16).
CONSUMER_TUNING: dict[str, Any] = {"fetch.queue.backoff.ms": 10}

# Over CONSUMER_TUNING for a broker on this machine (the embedded one). Kafka answers a fetch as soon as data is
# there; the embedded broker (Tansu) holds it for most of fetch.wait.max.ms even when messages arrive, so that
# librdkafka's default (500 ms) is the latency of every message: measured here, producer to consumer p50 / p99
# 130 / 251 ms at 500, 27 / 57 ms at 100, 2.9 / 8.9 ms at 5 (an idle fetch costs a loopback round trip).
LOCAL_TUNING: dict[str, Any] = {"fetch.wait.max.ms": 5}


@dataclasses.dataclass
class ConsumerConfig(adc_consumer.ConsumerConfig):
    """adc's consumer configuration plus librdkafka settings that it does not expose."""

    librdkafka: dict[str, Any] = dataclasses.field(default_factory=dict)

    def _to_confluent_kafka(self) -> dict[str, Any]:
        config = super()._to_confluent_kafka()
        config.update(self.librdkafka)
        return config


def confluent_consumer(consumer: adc_consumer.Consumer) -> Any:
    """The ``confluent_kafka.Consumer`` inside an adc consumer: the one place that reaches for it.

    adc-streaming 2.x keeps it as ``_consumer`` and offers no accessor; the stream needs it to fetch in
    batches (``consume``) and to commit the offsets of a batch after the database commit.
    """
    return consumer._consumer


def consumer_config(
    base_url: str,
    group_id: str,
    auth: Any,
    start_position: str,
    error_callback: Callable | None = None,
    extra: dict[str, Any] | None = None,
) -> ConsumerConfig:
    """The adc consumer configuration of the stream (``._to_confluent_kafka()`` gives confluent-kafka's dict).

    Parameters
    ----------
    base_url : str
        ``kafka://host:port``.
    group_id : str
        The consumer group.
    auth : hop.auth.Auth or False
        SCRAM credentials, or none.
    start_position : {"EARLIEST", "LATEST"}
        Where a group with no committed offset starts.
    error_callback : callable, optional
        librdkafka's error callback.
    extra : dict, optional
        More librdkafka settings (GCN's OAuth ones, :mod:`tom_mma_broker.gcn`), over :data:`CONSUMER_TUNING`,
        :data:`LOCAL_TUNING` (for a broker on this machine) and ``TOM_MMA_BROKER['CONSUMER_CONFIG']``.
    """
    _, brokers, _ = parse_kafka_url(f"{base_url}/topic")
    local = LOCAL_TUNING if all(is_local_host(b.rsplit(":", 1)[0]) for b in brokers) else {}
    return ConsumerConfig(
        broker_urls=brokers,
        group_id=group_id,
        read_forever=True,
        start_at=adc_consumer.ConsumerDefaultPosition[start_position],
        auth=auth or None,
        error_callback=error_callback,
        # a lost broker: librdkafka reconnects quickly; the stream watches for it and backs off itself
        reconnect_max_time=timedelta(seconds=5),
        librdkafka={**CONSUMER_TUNING, **local, **(broker_settings.CONSUMER_CONFIG or {}), **(extra or {})},
    )


def open_consumer(
    base_url: str,
    topics: list[str],
    group_id: str,
    auth: Any,
    start_position: str,
    error_callback: Callable,
    extra: dict[str, Any] | None = None,
    share: bool = False,
) -> adc_consumer.Consumer:
    """An adc consumer of ``topics``, resuming at the group's offsets.

    Every partition is assigned to it (as hop does), or with ``share`` it joins ``group_id`` as a Kafka
    consumer-group member (confluent-kafka's ``subscribe()``: the group's members share the partitions).

    hop's ``Stream.open`` builds the same consumer but cannot pass librdkafka settings; this one adds
    :data:`CONSUMER_TUNING`, ``TOM_MMA_BROKER['CONSUMER_CONFIG']`` and ``extra`` (:func:`consumer_config`).
    Offsets are never stored automatically (adc sets ``enable.auto.offset.store`` off): the stream commits
    them itself, after the database commit.
    """
    consumer = adc_consumer.Consumer(consumer_config(base_url, group_id, auth, start_position, error_callback, extra))
    try:
        if share:
            confluent_consumer(consumer).subscribe(list(topics))
        else:
            consumer.subscribe(topics)
    except Exception:
        consumer.close()
        raise
    return consumer


class Prefetcher(threading.Thread):
    """Fetch batches from Kafka and decode them, one or two batches ahead of the database.

    A fetch waits up to ``batch_timeout`` for one message, then takes what else is there already, up to
    ``batch_size``: a message that arrives alone goes to the database at once (it never waits to fill a
    batch), and batches grow with the load (what arrives while the database works on one batch makes the
    next). The consuming thread takes the batches fetched ahead together, up to ``batch_size``.
    """

    def __init__(self, kafka: Any, batch_size: int, batch_timeout: float, ignore_test: bool) -> None:
        super().__init__(name="tom-mma-prefetch", daemon=True)
        self.kafka = kafka
        self.batch_size = batch_size
        self.batch_timeout = batch_timeout
        self.ignore_test = ignore_test
        self.queue: queue.Queue = queue.Queue(maxsize=2)
        self._halt = threading.Event()
        self._held: tuple[list, list[Envelope]] | Exception | None = None  # taken from the queue, not handed yet
        self._to_commit: dict[tuple[str, int], Any] = {}  # offsets the consuming thread asks this one to commit
        self._commit_lock = threading.Lock()

    def commit_later(self, offsets: list[Any]) -> None:
        """Have this thread commit ``offsets`` (a list of ``TopicPartition``) asynchronously before its next fetch."""
        with self._commit_lock:
            for tp in offsets:
                self._to_commit[(tp.topic, tp.partition)] = tp

    def _commit_pending(self) -> None:
        with self._commit_lock:
            offsets, self._to_commit = list(self._to_commit.values()), {}
        if offsets:
            self.kafka.commit(offsets=offsets, asynchronous=True)

    def run(self) -> None:
        """Fetch and decode batches until halted, handing each (or the error) to the consuming thread."""
        while not self._halt.is_set():
            try:
                self._commit_pending()
                item: Any = self._fetch()
            except Exception as exc:  # handed to the consuming thread, which decides
                item = exc
            while not self._halt.is_set():
                try:
                    self.queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if isinstance(item, Exception):
                return

    def _fetch(self) -> tuple[list, list[Envelope]] | None:
        messages = self.kafka.consume(1, self.batch_timeout)
        if not messages:
            return None
        if self.batch_size > 1:
            messages += self.kafka.consume(self.batch_size - 1, 0)
        envelopes = []
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    continue
                raise KafkaException(error)
            envelope = Envelope.from_kafka(message)
            # a test message is archived (every message is accounted for), its handler not run
            envelope.test = self.ignore_test and header_value(message.headers(), "_test") is not None
            envelope.predecode()
            envelopes.append(envelope)
        return messages, envelopes

    def next_batch(self) -> tuple[list, list[Envelope]] | None:
        """The next batch (those fetched ahead, together up to ``batch_size``), None when Kafka had nothing.

        Re-raises what the fetch raised (after handing the batches fetched before it).
        """
        item, self._held = self._held, None
        if item is None:
            try:
                item = self.queue.get(timeout=max(self.batch_timeout * 2, 0.2))
            except queue.Empty:
                return None
        if isinstance(item, Exception):
            raise item
        if item is None:
            return None
        messages, envelopes = item
        while len(messages) < self.batch_size:
            try:
                more = self.queue.get_nowait()
            except queue.Empty:
                break
            if more is None:
                continue
            if isinstance(more, Exception) or len(messages) + len(more[0]) > self.batch_size:
                self._held = more  # the next call's
                break
            messages, envelopes = messages + more[0], envelopes + more[1]
        return messages, envelopes

    def halt(self) -> None:
        """Stop fetching and wait (briefly) for the thread."""
        self._halt.set()
        self.join(timeout=5)
