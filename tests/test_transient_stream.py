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
    "snews/alert.initial.example.json",
]
BAD_SNEWS = b'{"mission": "SNEWS", "id": "x", "detector_names": ["Super-K", "IceCube"], "neutrino_times": []}'


def test_gcn_notices_through_the_stream_and_a_bad_one_quarantined(kafka_broker, topic, settings):
    settings.TOM_MMA = {"ACCEPT_TEST_EVENTS": True}
    with open_producer(kafka_broker.url, topic) as producer:
        for name in FILES:  # as GCN Kafka sends them: bare JSON, no hop headers
            producer.write_raw((GCN / name).read_bytes(), [], topic=topic)
        producer.write_raw(b'{"$schema": "https://gcn.nasa.gov/schema/main/gcn/notices/fermi/gbm/trigger"}', [],
                           topic=topic)  # fmt: skip
        producer.write_raw(BAD_SNEWS, [], topic=topic)  # a bad SNEWS notice: quarantined, the next one is read
        producer.write_raw((GCN / "snews/alert.update.example.json").read_bytes(), [], topic=topic)
        producer.flush()
    config = stream_config(topic, handler="tom_mma.handlers.gcn.gcn_notice_handler")
    stats = ReliableHopskotchAlertStream(**config["OPTIONS"]).listen(max_messages=len(FILES) + 3, idle_timeout=15)
    assert stats["handled"] == len(FILES) and stats["quarantined"] == 3
    reasons = sorted(q.reason for q in QuarantinedAlert.objects.all())
    assert "healpix_file is not base64" in "".join(reasons)
    assert "trigger_time is missing" in "".join(reasons)
    assert "neutrino_times must give one time per detector" in "".join(reasons)
    sources = dict(TransientEvent.objects.values_list("source", "state"))
    assert sources == {
        "fermi-gbm": "active", "swift-bat-guano": "retracted", "ep-wxt": "active", "icecube-track": "active",
        "icecube-lvk-nu": "active", "superk-sn": "active", "snews-gcn": "active",
    }  # fmt: skip
    snews = TransientEvent.objects.get(source="snews-gcn")
    assert snews.properties["detector_names"] == ["Super-K", "IceCube", "KamLAND"]  # the update after the bad one
