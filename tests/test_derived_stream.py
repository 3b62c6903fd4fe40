"""End to end on the real embedded Kafka broker: derived alerts on a topic, the reliable stream, the handler."""

from __future__ import annotations

import uuid

import pytest
from django.test import override_settings
from tom_observations.models import ObservationRecord
from tom_targets.models import Target

from tests.conftest import publish_json, stream_config
from tests.test_derived_factories import alert_dict
from tom_mma.models import DerivedAlertRecord, ObservationTrigger
from tom_mma_broker.models import QuarantinedAlert
from tom_mma_broker.streams import ReliableHopskotchAlertStream

pytestmark = [pytest.mark.kafka, pytest.mark.django_db(transaction=True)]

HANDLER = "tom_mma.handlers.derived.derived_alert_handler"


@override_settings(
    TOM_FACILITY_CLASSES=["tom_mma.facilities.simulated.SimulatedFacility"],
    TOM_MMA={"OBSERVATION_SCORE_ONLY_WITHOUT_SKYMAP": True},  # the alerts name no GW event
)
def test_results_topic_to_targets_and_one_request_and_a_replay_adds_nothing(kafka_broker, topic):
    first = alert_dict(kilonova_score=0.8)
    second = alert_dict(kilonova_score=0.93, latest_point_mjd=57984.0)  # same candidate, later
    malformed = {**alert_dict(), "kilonova_score": 7}
    ids = publish_json(kafka_broker, topic, [first, malformed, second])

    config = stream_config(topic, handler=HANDLER)
    stats = ReliableHopskotchAlertStream(**config["OPTIONS"]).listen(max_messages=3, idle_timeout=15)
    assert stats["handled"] == 2 and stats["quarantined"] == 1

    target = Target.objects.get()
    assert target.name == "SSS17a"
    records = {str(r.alert_id): r for r in DerivedAlertRecord.objects.all()}
    assert set(records) == {first["alert_id"], second["alert_id"]}
    assert records[first["alert_id"]].delivery["message_id"] == str(uuid.UUID(str(ids[0])))
    assert ObservationTrigger.objects.get().status == "submitted"
    assert ObservationRecord.objects.count() == 1
    (quarantined,) = QuarantinedAlert.objects.all()
    assert "kilonova_score must be in [0, 1], not 7.0" in quarantined.reason

    # a new consumer group reads the topic again from the beginning: nothing new
    replay = stream_config(topic, handler=HANDLER)
    ReliableHopskotchAlertStream(**replay["OPTIONS"]).listen(max_messages=3, idle_timeout=15)
    assert Target.objects.count() == 1 and DerivedAlertRecord.objects.count() == 2
    assert ObservationTrigger.objects.count() == ObservationRecord.objects.count() == 1
