"""GCN JSON notices through the reliable stream on the real embedded broker: every kind, a bad one quarantined."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import stream_config
from tom_mma.models import TransientEvent
from tom_mma_broker.kafka import open_producer
from tom_mma_broker.models import QuarantinedAlert
from tom_mma_broker.streams import ReliableHopskotchAlertStream

pytestmark = [pytest.mark.kafka, pytest.mark.django_db(transaction=True)]

GCN = Path(__file__).parent / "data" / "gcn"
FILES = [
    "fermi/gbm/trigger.alert.example.json",
    "fermi/gbm/trigger.final.example.json",
    "swift/bat/Guano.example.json",
    "swift/bat/guano.loc_map.example.json",  # a placeholder instead of a HEALPix file: quarantined
    "swift/bat/Guano.Retraction.example.json",
    "einstein_probe/wxt/alert.example.json",
    "icecube/single_neutrino_alerts.gold_bronze_track_alerts.example.json",
    "icecube/lvk_nu_track_search.example.json",
    "superk/sn_alert.real.example.json",
]


def test_gcn_notices_through_the_stream_and_a_bad_one_quarantined(kafka_broker, topic, settings):
    settings.TOM_MMA = {"ACCEPT_TEST_EVENTS": True}
    with open_producer(kafka_broker.url, topic) as producer:
        for name in FILES:  # as GCN Kafka sends them: bare JSON, no hop headers
            producer.write_raw((GCN / name).read_bytes(), [], topic=topic)
        producer.write_raw(b'{"$schema": "https://gcn.nasa.gov/schema/main/gcn/notices/fermi/gbm/trigger"}', [],
                           topic=topic)  # fmt: skip
        producer.flush()
    config = stream_config(topic, handler="tom_mma.handlers.gcn.gcn_notice_handler")
    stats = ReliableHopskotchAlertStream(**config["OPTIONS"]).listen(max_messages=len(FILES) + 1, idle_timeout=15)
    assert stats["handled"] == len(FILES) - 1 and stats["quarantined"] == 2
    reasons = sorted(q.reason for q in QuarantinedAlert.objects.all())
    assert "healpix_file is not base64" in reasons[0] + reasons[1]
    assert "trigger_time is missing" in reasons[0] + reasons[1]
    sources = dict(TransientEvent.objects.values_list("source", "state"))
    assert sources == {
        "fermi-gbm": "active", "swift-bat-guano": "retracted", "ep-wxt": "active", "icecube-track": "active",
        "icecube-lvk-nu": "active", "superk-sn": "active",
    }  # fmt: skip
