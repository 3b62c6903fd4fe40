"""Shared fixtures: the real embedded Kafka broker (Tansu), topics, publishing helpers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tom_mma_broker.embedded import BrokerInfo, EmbeddedBrokerError, create_topics


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[BrokerInfo]:
    """The embedded broker, started once for the session in the test state directory.

    The state directory is the one the test settings name, so that ``URL: "embedded"`` resolves
    to it in this process and in the child processes tests start.
    """
    from tom_mma_broker.kafka import embedded_broker

    broker = embedded_broker()
    try:
        info = broker.start()
    except EmbeddedBrokerError as exc:  # pragma: no cover - the wheel is a test requirement
        pytest.fail(f"the embedded Kafka broker does not start: {exc}")
    yield info
    broker.stop()


@pytest.fixture(autouse=True)
def _fresh_outbox_producers() -> Iterator[None]:
    """Each test starts without the producers the outbox publisher keeps per thread (tests change KAFKA_URL).

    The eager background thread of :mod:`tom_mma.deferred` keeps one too: every thread's is dropped.
    """
    from tom_mma_broker import publishing

    publishing._producers.clear()
    yield
    publishing._discard_producer()
    publishing._producers.clear()


@pytest.fixture
def topic(kafka_broker: BrokerInfo) -> str:
    """A new, empty topic on the embedded broker."""
    name = f"test.{uuid.uuid4().hex[:12]}"
    create_topics(kafka_broker.bootstrap, [name])
    return name


def publish_json(broker: BrokerInfo, topic: str, contents: list[dict], raw: list[tuple[bytes, str]] = ()) -> list:
    """Publish JSON messages with hop's headers (and optional raw payloads with a format); return the ids."""
    from tom_mma_broker.kafka import hop_headers, open_producer

    ids = []
    with open_producer(broker.url, topic) as producer:
        for content in contents:
            message_id, headers = hop_headers("json")
            producer.write_raw(json.dumps(content).encode(), headers, topic=topic)
            ids.append(message_id)
        for payload, fmt in raw:
            message_id, headers = hop_headers(fmt)
            producer.write_raw(payload, headers, topic=topic)
            ids.append(message_id)
        producer.flush()
    return ids


def stream_config(
    topic: str, handler: str | None = "tests.handlers.record", group: str | None = None, url: str = "embedded"
) -> dict:
    """An ``ALERT_STREAMS`` entry for the reliable stream reading ``topic``."""
    return {
        "ACTIVE": True,
        "NAME": "tom_mma_broker.streams.ReliableHopskotchAlertStream",
        "OPTIONS": {
            "URL": url,
            "GROUP_ID": group or f"g-{uuid.uuid4().hex[:8]}",
            "START_POSITION": "EARLIEST",
            "TOPIC_HANDLERS": {topic: handler},
        },
    }


def child_env(**extra: str) -> dict:
    """Environment for a child ``manage.py`` process that shares this test's database and broker."""
    from django.conf import settings

    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="tests.settings",
        TOM_MMA_TEST_CHILD="1",
        TOM_MMA_TEST_TMP=str(__import__("pathlib").Path(settings.TOM_MMA_BROKER["EMBEDDED_STATE_DIR"]).parent),
    )
    env.update(extra)
    return env


# a Redis database of its own (TOM_MMA_TEST_REDIS_DB): the fixture empties it
REDIS_URL = f"redis://127.0.0.1:6379/{os.environ.get('TOM_MMA_TEST_REDIS_DB', '13')}"


@pytest.fixture
def celery_on_redis():
    """Send this process's tasks to a real Redis (db 13, emptied) instead of running them eagerly.

    Celery caches its connection pools: they are dropped before and after, so that the new broker URL is
    the one used, and later tests get their eager settings back. (Not ``app.close()``: that deregisters the
    app, and shared tasks imported later would never register with it.)
    """
    import redis

    from example_tom.celery import app

    redis.Redis.from_url(REDIS_URL).flushdb()
    old = {"broker_url": app.conf.broker_url, "task_always_eager": app.conf.task_always_eager}
    _drop_pools(app)
    app.conf.update(broker_url=REDIS_URL, task_always_eager=False)
    yield REDIS_URL
    _drop_pools(app)
    app.conf.update(**old)


def _drop_pools(app) -> None:
    # drop, do not close: other holders of the old pool finish with it, new sends build new pools
    app._pool = None
    if "amqp" in app.__dict__:
        app.amqp._producer_pool = None


def start_worker(log_path, **env) -> subprocess.Popen:
    """A real Celery worker (solo pool) on :data:`REDIS_URL`, sharing the test database and broker."""
    root = Path(__file__).resolve().parent.parent
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "example_tom", "worker", "--pool=solo", "--without-gossip",
         "--without-mingle", "--without-heartbeat", "-l", "info"],
        cwd=root, env=child_env(TOM_MMA_TEST_CELERY_BROKER=REDIS_URL, **env),
        stdout=subprocess.DEVNULL, stderr=open(log_path, "w"),
    )  # fmt: skip


def stop_worker(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
