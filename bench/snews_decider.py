"""The SNEWS decider on the reliable stream: messages/s, and latency from a message to its alert on the topic.

One process: the embedded Kafka broker, the reliable stream (``ReliableHopskotchAlertStream`` with the SNEWS
handler: archive, decider state written, alerts queued in the outbox, all in the batch transaction), the
outbox publisher (in a thread of its own, woken by the stream's commit, as a Celery worker would run it), and
a consumer of the coincidence topic.
Messages are published at ``--rate`` per second from ``--detectors`` detectors, their neutrino times within
5 s of each other: after the first, every message joins or updates the one coincidence (SNEWS allows one
message per detector in the cache), so every message makes an alert. Latency: from the moment a message was
handed to the producer to the moment its alert was read from the coincidence topic (p50, p99, max).

Goal (issue 11): p99 under 50 ms at 1,000 messages/s from 20 detectors. Peer: none runs on this path
(``snews-cs`` itself needs SCiMMA's brokers, MongoDB and hop-client < 0.11).

    python bench/snews_decider.py [--rate 1000 --seconds 10 --detectors 20] [--postgres] [--profile DIR]

The stages of each message (``stage_<name>_p50_s``, ``_p99_s``, each from the one before): ``fetched`` (from
the producer to the stream's prefetch thread), ``ingest`` (waiting for the stream thread), ``committed`` (the
batch's transaction), ``offsets`` (the Kafka commit after it), ``claimed`` (from the database commit to the
publisher's claim of its alert), ``flushed`` (produced and acknowledged), ``received`` (read by a consumer of
the coincidence topic). ``--profile DIR`` writes a cProfile file of the stream, prefetch and publisher threads.

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from benchstats import percentile  # bench/ is on sys.path when a benchmark runs as a script

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN = "postgres://postgres@127.0.0.1:5432/postgres"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="messages per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long to publish")
    parser.add_argument("--detectors", type=int, default=20)
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL instead of SQLite")
    parser.add_argument("--profile", metavar="DIR", help="write a cProfile file per thread of the pipeline there")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="snews-bench-"))
    db_name = f"bench_snews_{os.getpid()}"
    os.environ.update(DJANGO_SETTINGS_MODULE="tests.settings", TOM_MMA_TEST_CHILD="1", TOM_MMA_TEST_TMP=str(tmp))
    if args.postgres:
        import psycopg

        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{db_name}"')
        os.environ.update(TEST_DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{db_name}",
                          TOM_MMA_TEST_DB_NAME=db_name)  # fmt: skip
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    import logging

    logging.disable(logging.INFO)  # a log line per alert would be part of the figures
    from django.conf import settings
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    try:
        result = run(args, settings)
    finally:
        if args.postgres:
            from django.db import connections

            connections.close_all()
            import psycopg

            with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
    print(json.dumps(result), flush=True)


class Stages:
    """When each batch of messages reached each stage of the pipeline (monotonic clock), kept cheaply.

    Wraps, for the benchmark only, the points where a batch passes from one stage to the next: fetched from
    Kafka (the prefetch thread), handed to the ingestor, its transaction committed, its offsets committed;
    then its alerts claimed from the outbox, and the producer's flush (the broker's acknowledgement). The
    messages of each batch are read from their payloads after the run.
    """

    def __init__(self) -> None:
        self.batches: dict[str, list[tuple[float, list]]] = {"fetched": [], "ingest": [], "committed": [],
                                                             "offsets": []}  # fmt: skip
        self.claims: list[tuple[int, float, list]] = []
        self.flushes: list[tuple[int, float]] = []

    def install(self) -> None:
        from hop.io import Producer

        from tom_mma_broker import publishing
        from tom_mma_broker.consumer import Prefetcher
        from tom_mma_broker.ingest import Ingestor
        from tom_mma_broker.streams import ReliableHopskotchAlertStream

        fetch, ingest, commit = Prefetcher._fetch, Ingestor.ingest, ReliableHopskotchAlertStream._commit
        claim, flush = publishing._claim, Producer.flush
        batches = self.batches

        def _fetch(prefetcher):
            got = fetch(prefetcher)
            if got is not None:
                batches["fetched"].append((time.monotonic(), got[1]))
            return got

        def _ingest(ingestor, envelopes):
            batches["ingest"].append((time.monotonic(), list(envelopes)))
            try:
                return ingest(ingestor, envelopes)
            finally:
                batches["committed"].append((time.monotonic(), list(envelopes)))

        def _commit(stream, consumer, messages):
            done = commit(stream, consumer, messages)
            batches["offsets"].append((time.monotonic(), messages))
            return done

        def _claim(*a, **k):
            rows = claim(*a, **k)
            self.claims.append((threading.get_ident(), time.monotonic(), rows))
            return rows

        def _flush(producer, *a, **k):
            try:
                return flush(producer, *a, **k)
            finally:
                self.flushes.append((threading.get_ident(), time.monotonic()))

        Prefetcher._fetch, Ingestor.ingest = _fetch, _ingest
        ReliableHopskotchAlertStream._commit = _commit
        publishing._claim, Producer.flush = _claim, _flush

    def times(self) -> dict[str, dict[str, float]]:
        """Stage -> message uid -> when it got there."""
        out: dict[str, dict[str, float]] = {}
        for stage, batches in self.batches.items():
            when = out[stage] = {}
            for t, items in batches:
                for item in items:
                    payload = item.payload if hasattr(item, "payload") else item.value()
                    try:
                        when.setdefault(json.loads(payload)["uuid"], t)
                    except (ValueError, KeyError, TypeError):
                        continue
        claimed, flushed = out["claimed"], out["flushed"] = {}, {}
        for thread, t, rows in self.claims:
            done = next((f for th, f in self.flushes if th == thread and f >= t), None)
            for row in rows:
                uid = json.loads(bytes(row.payload)).get("trigger_uid")
                claimed.setdefault(uid, t)
                if done is not None:
                    flushed.setdefault(uid, done)
        return out


def stage_figures(sent: dict[str, float], received: dict[str, float], stages: Stages) -> dict[str, float]:
    """p50 and p99 of the time each stage took, from the previous one (``stage_<name>_p50_s``)."""
    times = stages.times()
    order = [("fetched", None), ("ingest", None), ("committed", None), ("offsets", None), ("claimed", None),
             ("flushed", None), ("received", received)]  # fmt: skip
    figures: dict[str, float] = {}
    previous = sent
    for name, own in order:
        current = own if own is not None else times[name]
        if name == "claimed":
            previous = times["committed"]  # claimed after the commit, in parallel with the offsets
        spans = [current[u] - previous[u] for u in current if u in previous]
        figures[f"stage_{name}_p50_s"] = round(percentile(spans, 0.5), 4)
        figures[f"stage_{name}_p99_s"] = round(percentile(spans, 0.99), 4)
        previous = current
    return figures


def profiled(target, directory: str | None, name: str):
    """``target`` under cProfile, its stats written to ``directory/name.prof`` when it returns."""
    if not directory:
        return target
    import cProfile

    def run(*args, **kwargs):
        profile = cProfile.Profile()
        profile.enable()
        try:
            return target(*args, **kwargs)
        finally:
            profile.disable()
            os.makedirs(directory, exist_ok=True)
            profile.dump_stats(os.path.join(directory, f"{name}.prof"))

    return run


def run(args, settings) -> dict:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    from tom_mma_broker.embedded import create_topics
    from tom_mma_broker.kafka import embedded_broker, hop_headers, open_producer
    from tom_mma_broker.models import OutboxMessage
    from tom_mma_broker.streams import ReliableHopskotchAlertStream

    stages = Stages()
    stages.install()
    if args.profile:
        from tom_mma_broker.consumer import Prefetcher

        Prefetcher.run = profiled(Prefetcher.run, args.profile, "prefetch")
    broker = embedded_broker()
    info = broker.start()
    try:
        suffix = uuid.uuid4().hex[:6]
        topics = {"obs": f"snews.experiments.{suffix}", "alert": f"snews.alert.{suffix}",
                  "test": f"snews.alert-test.{suffix}", "nocoinc": f"snews.nocoinc.{suffix}"}  # fmt: skip
        create_topics(info.bootstrap, topics.values())
        settings.TOM_MMA_BROKER = {**settings.TOM_MMA_BROKER, "SNEWS_ALERT_TOPIC": topics["alert"],
                                   "SNEWS_TEST_ALERT_TOPIC": topics["test"],
                                   "SNEWS_NO_COINCIDENCE_TOPIC": topics["nocoinc"],
                                   "SNEWS_EXPIRY_S": 3600.0}  # fmt: skip
        n = int(args.rate * args.seconds)
        stream = ReliableHopskotchAlertStream(
            URL=info.url, GROUP_ID=f"bench-{suffix}", START_POSITION="EARLIEST",
            TOPIC_HANDLERS={topics["obs"]: "tom_mma_broker.snews.handlers.snews_observation_handler"},
        )  # fmt: skip
        received: dict[str, float] = {}
        stop = threading.Event()

        # the outbox publisher in its own thread, as a Celery worker runs it beside readstreams (in the stream's
        # thread, each batch would wait for the broker's acknowledgement before the next is read)
        from tom_mma_broker import publishing, signals

        wake = threading.Event()
        # the outbox's signal after each batch commit wakes this thread (in place of the eager Celery task,
        # which would publish in the stream's thread)
        signals.outbox_queued.disconnect(dispatch_uid="tom_mma_broker.outbox_queued")
        signals.outbox_queued.connect(lambda **kwargs: wake.set(), weak=False, dispatch_uid="bench.wake")

        def publisher() -> None:
            from django.db import close_old_connections

            # a worker's producer is kept between calls: opened before the run, as in a worker that has run a
            # while (its first message would wait ~0.5 s for the idempotent producer's id)
            publishing.warm_up()
            while not stop.is_set():
                if wake.wait(0.05):
                    wake.clear()
                    while publishing.publish_pending(limit=1000):
                        pass
            close_old_connections()

        threading.Thread(target=profiled(publisher, args.profile, "publisher"), daemon=True).start()

        def consume_alerts() -> None:
            consumer = Consumer({"bootstrap.servers": info.bootstrap, "group.id": f"a-{suffix}",
                                 "fetch.wait.max.ms": 5, "fetch.queue.backoff.ms": 1})  # fmt: skip
            consumer.assign([TopicPartition(topics["alert"], 0, OFFSET_BEGINNING)])
            while not stop.is_set():
                # as soon as one alert is there (a timeout would wait to fill a batch), then what else is there
                messages = consumer.consume(1, 0.05)
                if messages:
                    messages += consumer.consume(500, 0)
                now = time.monotonic()
                for message in messages:
                    if message.error() is None:
                        received.setdefault(json.loads(message.value())["trigger_uid"], now)
            consumer.close()

        listen = profiled(stream.listen, args.profile, "stream")
        listener = threading.Thread(target=listen, kwargs={"max_messages": n, "idle_timeout": 30})
        alerts = threading.Thread(target=consume_alerts, daemon=True)
        listener.start()
        alerts.start()
        time.sleep(2.0)  # the stream's first open (topic listing, consumer join) is not part of the figures

        sent: dict[str, float] = {}
        sent_wall: dict[str, float] = {}
        base = "2030-01-01T00:00:00"
        start = time.monotonic()
        with open_producer(info.url, topics["obs"], idempotent=False) as producer:
            for i in range(n):
                due = start + i / args.rate
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                uid = f"bench-{i}"
                body = {"tier": "CoincidenceTier", "detector_name": f"detector-{i % args.detectors:02d}",
                        "neutrino_time_utc": f"{base}.{(i * 7919) % 5_000_000:07d}"[:26], "p_val": 0.01,
                        "uuid": uid}  # fmt: skip
                _, headers = hop_headers("json")
                sent[uid] = time.monotonic()
                sent_wall[uid] = time.time()
                producer.write_raw(json.dumps(body).encode(), headers, topic=topics["obs"])
            producer.flush()
        published = time.monotonic()
        listener.join(timeout=args.seconds * 10 + 60)
        handled_at = time.monotonic()
        deadline = time.monotonic() + 30
        expected = OutboxMessage.objects.filter(kind="snews-alert").count()
        while len(received) < expected and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        latencies = [received[u] - sent[u] for u in received if u in sent]
        # the stages, from the outbox rows' own timestamps (wall clock): queued in the batch transaction, and
        # acknowledged by the broker
        queued, acked = [], []
        for payload, created, sent_at in OutboxMessage.objects.filter(kind="snews-alert").values_list(
            "payload", "created", "sent_at"
        ):
            uid = json.loads(bytes(payload))["trigger_uid"]
            if uid in sent_wall and sent_at is not None:
                queued.append(created.timestamp() - sent_wall[uid])
                acked.append(sent_at.timestamp() - created.timestamp())
        return {
            "bench": "snews_decider",
            "database": "postgresql" if args.postgres else "sqlite",
            "rate_requested": args.rate,
            "detectors": args.detectors,
            "messages": n,
            "handled": stream.stats.get("handled", 0),
            "publish_rate": round(n / (published - start), 1),
            "messages_per_s": round(stream.stats.get("handled", 0) / (handled_at - start), 1),
            "alerts_queued": expected,
            "alerts_received": len(latencies),
            "p50_s": round(percentile(latencies, 0.5), 4),
            "p99_s": round(percentile(latencies, 0.99), 4),
            "max_s": round(max(latencies), 4) if latencies else None,
            "to_outbox_p50_s": round(percentile(queued, 0.5), 4),
            "to_outbox_p99_s": round(percentile(queued, 0.99), 4),
            "outbox_to_ack_p50_s": round(percentile(acked, 0.5), 4),
            "outbox_to_ack_p99_s": round(percentile(acked, 0.99), 4),
            **stage_figures(sent, received, stages),
            "goal_p99_s": 0.05,
            "completed": len(latencies) == expected and stream.stats.get("handled", 0) == n,
        }
    finally:
        broker.stop()


if __name__ == "__main__":
    main()
