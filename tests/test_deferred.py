"""The stream thread never waits on an observatory: a facility that takes its time delays nothing behind it.

The facility (``tests.facilities.BlockingFacility``) answers only when the test releases it, so that what is
checked is an order of events (the messages behind the trigger are handled and their offsets committed while
the facility has not answered), never a duration.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
from confluent_kafka import Consumer, TopicPartition
from django.test import override_settings
from tom_observations.models import ObservationRecord

from tests.conftest import publish_json, start_worker, stop_worker, stream_config
from tests.test_derived_factories import alert_dict, candidate
from tom_mma.models import DerivedAlertRecord, ObservationTrigger
from tom_mma_broker.streams import ReliableHopskotchAlertStream

pytestmark = [pytest.mark.kafka, pytest.mark.django_db(transaction=True)]

HANDLER = "tom_mma.handlers.derived.derived_alert_handler"
TOM_MMA = {"OBSERVATION_SCORE_ONLY_WITHOUT_SKYMAP": True, "OBSERVATION_FACILITY": "Blocking"}


def committed(broker, topic: str, group: str) -> int:
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group})
    try:
        [partition] = consumer.committed([TopicPartition(topic, 0)], timeout=10)
        return partition.offset
    finally:
        consumer.close()


def wait_for(condition, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.1)


def messages(n_behind: int = 5) -> list[dict]:
    """One alert that triggers a request, then ``n_behind`` alerts of other candidates that trigger none."""
    trigger = alert_dict(kilonova_score=0.9)
    behind = [
        alert_dict(kilonova_score=0.05, candidate=candidate(f"AT-behind-{i}", 10.0 + i, -20.0)) for i in range(n_behind)
    ]
    return [trigger, *behind]


def _assert_behind_handled_while_facility_waits(broker, topic, group, n: int) -> ObservationTrigger:
    wait_for(lambda: DerivedAlertRecord.objects.count() == n, "the alerts behind the trigger to be handled")
    wait_for(lambda: committed(broker, topic, group) == n, "the offsets to be committed")
    trigger = ObservationTrigger.objects.get()
    assert trigger.status in ("pending", "submitting")  # the facility has not answered yet
    assert not ObservationRecord.objects.exists()
    return trigger


@pytest.mark.redis
def test_a_slow_facility_delays_no_message_behind_the_trigger_with_a_real_worker(
    kafka_broker, topic, celery_on_redis, tmp_path
):
    release = tmp_path / "release"
    config = stream_config(topic, handler=HANDLER)
    group = config["OPTIONS"]["GROUP_ID"]
    worker = start_worker(tmp_path / "worker.log", TOM_MMA_TEST_TOM_MMA=json.dumps(TOM_MMA),
                          TOM_MMA_TEST_RELEASE_FILE=str(release))  # fmt: skip
    try:
        with override_settings(TOM_MMA=TOM_MMA):
            publish_json(kafka_broker, topic, messages())
            stats = ReliableHopskotchAlertStream(**config["OPTIONS"]).listen(max_messages=6, idle_timeout=20)
            assert stats["handled"] == 6
            _assert_behind_handled_while_facility_waits(kafka_broker, topic, group, 6)
            release.touch()  # the facility answers
            wait_for(lambda: ObservationTrigger.objects.get().status == "submitted", "the request to be submitted")
    finally:
        stop_worker(worker)
    trigger = ObservationTrigger.objects.get()
    assert trigger.facility == "Blocking" and trigger.attempts == 1
    assert list(trigger.observation_records.values_list("facility", flat=True)) == ["Blocking"]


def test_in_eager_mode_too_the_stream_thread_hands_the_facility_to_a_background_thread(
    kafka_broker, topic, tmp_path, monkeypatch
):
    release = tmp_path / "release"
    monkeypatch.setenv("TOM_MMA_TEST_RELEASE_FILE", str(release))
    config = stream_config(topic, handler=HANDLER)
    group = config["OPTIONS"]["GROUP_ID"]
    with override_settings(TOM_MMA=TOM_MMA):
        publish_json(kafka_broker, topic, messages())
        stream = ReliableHopskotchAlertStream(**config["OPTIONS"])
        result: dict = {}
        reader = threading.Thread(target=lambda: result.update(stream.listen(max_messages=6, idle_timeout=20)))
        reader.start()
        try:
            trigger = _assert_behind_handled_while_facility_waits(kafka_broker, topic, group, 6)
            # the background thread is inside the facility's call (it gets there on its own time: wait)
            wait_for(lambda: ObservationTrigger.objects.get(pk=trigger.pk).status == "submitting", "the facility call")
        finally:
            release.touch()
            reader.join(60)
    assert result["handled"] == 6  # listen() returned once the work it deferred had finished
    assert ObservationTrigger.objects.get().status == "submitted"
    assert ObservationRecord.objects.filter(facility="Blocking").count() == 1
