"""Celery wiring: a real worker on a real Redis re-handles a quarantined message once its cause is fixed."""

from __future__ import annotations

import json
import time

import pytest

from tests.conftest import start_worker, stop_worker, stream_config
from tests.testapp.models import HandledMessage
from tom_mma_broker.ingest import Envelope, Ingestor
from tom_mma_broker.models import ArchivedAlert, QuarantinedAlert
from tom_mma_broker.quarantine import rehandle


def quarantine_one(topic: str) -> ArchivedAlert:
    from tests import handlers

    [result] = Ingestor({topic: handlers.requires_marker}, retry_delay=0).ingest(
        [Envelope(topic=topic, payload=b'{"seq": 7}', headers=[("_format", b"json")], partition=0, offset=1)]
    )
    assert result.outcome.value == "quarantined" and "marker row missing" in result.reason
    return ArchivedAlert.objects.get(topic=topic)


@pytest.mark.django_db
def test_rehandle_is_idempotent_and_keeps_failures_quarantined(settings):
    settings.ALERT_STREAMS = [stream_config("q.topic", handler="tests.handlers.requires_marker")]
    alert = quarantine_one("q.topic")
    assert rehandle(alert.pk) == "failed"
    assert QuarantinedAlert.objects.get(alert=alert).attempts == 4
    HandledMessage.objects.create(seq=-1, topic="marker")  # the operator fixes the cause
    assert rehandle(alert.pk) == "handled"
    assert rehandle(alert.pk) == "skipped"  # idempotent
    alert.refresh_from_db()
    assert alert.status == "handled" and QuarantinedAlert.objects.get(alert=alert).released is not None
    assert HandledMessage.objects.filter(seq=7).count() == 1


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_on_redis_runs_the_task_enqueued_on_commit(celery_on_redis, tmp_path):
    import redis
    from django.db import transaction

    from tom_mma_broker.tasks import rehandle_quarantined

    config = stream_config("q.worker", handler="tests.handlers.requires_marker")
    alert = quarantine_one("q.worker")
    HandledMessage.objects.create(seq=-1, topic="marker")
    worker = start_worker(tmp_path / "worker.log", TOM_MMA_TEST_ALERT_STREAMS=json.dumps([config]))
    try:
        with transaction.atomic():
            rehandle_quarantined.delay_on_commit(alert.pk)
            # nothing is sent before the commit
            assert redis.Redis.from_url(celery_on_redis).llen("celery") == 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            alert.refresh_from_db()
            if alert.status == "handled":
                break
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
            time.sleep(0.2)
    finally:
        stop_worker(worker)
    assert alert.status == "handled"
    assert HandledMessage.objects.filter(seq=7).count() == 1


@pytest.mark.django_db
def test_rehandle_keeps_a_reason_the_database_would_refuse(settings):
    settings.ALERT_STREAMS = [stream_config("n.topic", handler="tests.handlers.raises_nul")]
    from tests import handlers

    [result] = Ingestor({"n.topic": handlers.raises_nul}, retry_delay=0).ingest(
        [Envelope(topic="n.topic", payload=b'{"seq": 8}', headers=[("_format", b"json")], partition=0, offset=1)]
    )
    assert result.outcome.value == "quarantined"
    alert = ArchivedAlert.objects.get(topic="n.topic")
    assert rehandle(alert.pk) == "failed"  # on PostgreSQL, a raw NUL in the reason made this save fail
    assert "bad byte \\x00 in the alert" in QuarantinedAlert.objects.get(alert=alert).reason
