"""Replaying GW170817 twice: the second replay adds nothing, through ``replaygw170817`` and through ``mmademo``."""

from __future__ import annotations

import io
import re
import uuid

import pytest
from django.core.management import call_command

from tom_mma_broker.embedded import create_topics
from tom_mma_broker.gw170817 import replay_messages
from tom_mma_broker.gw170817.replay import replay_message_id
from tom_mma_broker.models import ArchivedAlert
from tom_mma_broker.streams import ReliableHopskotchAlertStream

pytestmark = [pytest.mark.kafka, pytest.mark.django_db(transaction=True)]


def replay_command(broker, gw_topic: str, photometry_topic: str) -> str:
    out = io.StringIO()
    call_command("replaygw170817", "--speed", "0", "--url", broker.url, "--gw-topic", gw_topic,
                 "--photometry-topic", photometry_topic, "--no-progress", stdout=out, stderr=io.StringIO())  # fmt: skip
    return out.getvalue()


def read(broker, group: str, topics: list[str], n: int) -> dict[str, int]:
    """Ingest the next ``n`` messages of ``topics`` (archive only) with the reliable stream, as ``group``."""
    stream = ReliableHopskotchAlertStream(
        URL=broker.url, GROUP_ID=group, START_POSITION="EARLIEST", TOPIC_HANDLERS=dict.fromkeys(topics)
    )
    stats = stream.listen(max_messages=n, idle_timeout=30)
    assert sum(stats.values()) == n, f"the stream read {stats} of {n} messages within its idle timeout"
    return stats


def test_replaygw170817_twice_archives_each_message_once(kafka_broker):
    suffix = uuid.uuid4().hex[:8]
    topics = [f"gw.{suffix}", f"phot.{suffix}"]
    create_topics(kafka_broker.bootstrap, topics)
    group = f"replay-{suffix}"
    expected = {f"id:{replay_message_id(m)}" for m in replay_messages()}

    assert "27 messages" in replay_command(kafka_broker, *topics)
    first = read(kafka_broker, group, topics, 27)
    assert first["archived"] == 27
    assert set(ArchivedAlert.objects.values_list("key", flat=True)) == expected

    replay_command(kafka_broker, *topics)
    second = read(kafka_broker, group, topics, 27)
    # the same fixed ids: every message of the second replay is a duplicate of the first's
    assert second["duplicate"] == 27 and second["archived"] == 0
    assert ArchivedAlert.objects.count() == 27


@pytest.mark.slow
def test_mmademo_once_twice_makes_the_target_its_request_and_nothing_more(kafka_broker, settings, tmp_path):
    """``mmademo --once`` (eager Celery, embedded broker), run twice: the same TOM, nothing doubled.

    The first run uses the broker that is already running and leaves it running; the second starts one of
    its own (another state directory) and stops it when it is done.
    """
    from tom_dataproducts.models import PhotometryReducedDatum
    from tom_observations.models import ObservationRecord
    from tom_targets.models import Target

    from tests.test_pipeline import snapshot
    from tom_mma.models import DerivedAlertRecord, ObservationTrigger
    from tom_mma_broker.gw170817 import DEFAULT_GW_TOPIC, DEFAULT_PHOTOMETRY_TOPIC
    from tom_mma_broker.kafka import embedded_broker

    results = f"derived.demo.{uuid.uuid4().hex[:8]}"
    settings.TOM_MMA_BROKER = {**settings.TOM_MMA_BROKER, "RESULTS_TOPIC": results}
    settings.TOM_MMA = {**getattr(settings, "TOM_MMA", {}), "ACCEPT_MOCK_EVENTS": True}
    handlers = {
        DEFAULT_GW_TOPIC: "tom_mma.handlers.lvk.igwn_gwalert_handler",
        DEFAULT_PHOTOMETRY_TOPIC: "tom_mma_broker.handlers.photometry_handler",
        results: "tom_mma.handlers.derived.derived_alert_handler",
    }
    settings.ALERT_STREAMS = [{"ACTIVE": True, "NAME": "tom_mma_broker.streams.ReliableHopskotchAlertStream",
                               "OPTIONS": {"URL": "embedded", "TOPIC_HANDLERS": handlers}}]  # fmt: skip

    def mmademo() -> str:
        out = io.StringIO()
        call_command("mmademo", "--once", "--speed", "0", "--timeout", "120", stdout=out)
        return out.getvalue()

    output = mmademo()
    assert "demo complete" in output
    # the progress counts up to the number of messages the replay sends, never past it
    progress = [tuple(map(int, m)) for m in re.findall(r"GW170817 replay: (\d+)/(\d+) messages", output)]
    assert progress and progress[-1][0] == progress[-1][1] and all(done <= total for done, total in progress)
    assert f"replaying GW170817: {progress[-1][1]} messages" in output
    assert " INFO " not in output  # the story, not the logs (-v 2 shows them)
    assert "to look at it in the TOM" in output and "/gw/MS170817a/" in output
    assert "candidate AT2017gfo: 25 points" in output
    assert "GW event MS170817a (GW170817 replayed as a mock event from its real sky map)" in output
    assert "26 on tom-mma.gw170817" not in output and "25 on tom-mma.gw170817.photometry" in output
    assert "observation request" in output and "on Simulated for AT2017gfo: Pending" in output  # the pages' word
    target = Target.objects.get(name="AT2017gfo")
    assert PhotometryReducedDatum.objects.filter(target=target).count() == 25
    scores = DerivedAlertRecord.objects.filter(target=target, kind="classification")
    assert scores.exists() and max(scores.values_list("kilonova_score", flat=True)) > 0.9
    assert ObservationRecord.objects.filter(target=target).count() == 1
    assert ObservationTrigger.objects.get(target=target).details["region"] == "inside"
    first = snapshot()

    assert kafka_broker.pid == embedded_broker().status().pid  # not the demo's to stop

    settings.TOM_MMA_BROKER = {**settings.TOM_MMA_BROKER, "EMBEDDED_STATE_DIR": str(tmp_path / "kafka")}
    output = mmademo()
    assert "demo complete" in output and "embedded Kafka broker stopped" in output
    assert embedded_broker().status() is None  # nothing of the demo's own is left running
    assert snapshot() == first
