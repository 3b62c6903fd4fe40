"""Optical alerts through the real embedded Kafka broker: Fink's wire format and direct packets."""

from __future__ import annotations

import io
import uuid

import pytest
from confluent_kafka import Producer
from django.core.management import call_command
from tom_dataproducts.models import PhotometryReducedDatum
from tom_targets.models import Target

from tests import optical_samples as s
from tom_mma.optical.alerts import normalise
from tom_mma_broker.embedded import create_topics
from tom_mma_broker.models import ArchivedAlert, QuarantinedAlert
from tom_mma_broker.streams import ReliableHopskotchAlertStream

pytestmark = [pytest.mark.kafka, pytest.mark.django_db(transaction=True)]


def _topics(broker, *kinds: str) -> dict[str, str]:
    names = {kind: f"test.{kind}.{uuid.uuid4().hex[:8]}" for kind in kinds}
    create_topics(broker.bootstrap, list(names.values()))
    return names


def _options(handlers: dict[str, str]) -> dict:
    return {"URL": "embedded", "GROUP_ID": f"g-{uuid.uuid4().hex[:8]}", "START_POSITION": "EARLIEST",
            "TOPIC_HANDLERS": handlers}  # fmt: skip


def test_fink_wire_format_and_direct_packets_through_the_broker(kafka_broker, settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    topics = _topics(kafka_broker, "fink-ztf", "fink-lsst", "lsst")
    producer = Producer({"bootstrap.servers": kafka_broker.bootstrap})
    # Fink's livestream: schemaless Avro, the writer schema as the key (as fink-client 12 reads it)
    (ztf,), ztf_schema = s.records(s.FINK_ZTF)
    for record in (ztf, ztf):  # the same alert twice (Fink redelivers): one Target, its points once
        value, key = s.fink_message(record, ztf_schema)
        producer.produce(topics["fink-ztf"], value=value, key=key)
    lsst, lsst_schema = s.records(s.FINK_LSST)
    for record in lsst:
        value, key = s.fink_message(record, lsst_schema)
        producer.produce(topics["fink-lsst"], value=value, key=key)
    # Rubin packets as Confluent frames: one good, one with a schema id nobody ships
    (rubin,), _ = s.records(s.rubin_sample("11.0"))
    frame = s.confluent_frame(rubin, "lsst.v11_0")
    producer.produce(topics["lsst"], value=frame)
    producer.produce(topics["lsst"], value=frame[:1] + (777).to_bytes(4, "big") + frame[5:])
    producer.flush(10)

    handlers = {
        topics["fink-ztf"]: "tom_mma.handlers.optical.fink_ztf_handler",
        topics["fink-lsst"]: "tom_mma.handlers.optical.fink_lsst_handler",
        topics["lsst"]: "tom_mma.handlers.optical.lsst_handler",
    }
    total = 2 + len(lsst) + 2
    stats = ReliableHopskotchAlertStream(**_options(handlers)).listen(max_messages=total, idle_timeout=15)
    assert stats["handled"] == total - 1 and stats["quarantined"] == 1
    assert "unknown Rubin schema id 777" in QuarantinedAlert.objects.get().reason
    expected = {normalise(r).name for r in [ztf, *lsst, rubin]}
    assert set(Target.objects.values_list("name", flat=True)) == expected
    ztf_target = Target.objects.get(name=ztf["objectId"])
    assert PhotometryReducedDatum.objects.filter(target=ztf_target).count() == len(normalise(ztf).points)

    # a new consumer group reads everything again: nothing new
    counts = (Target.objects.count(), PhotometryReducedDatum.objects.count())
    again = ReliableHopskotchAlertStream(**_options(handlers)).listen(max_messages=total, idle_timeout=15)
    assert again["duplicate"] == total
    assert (Target.objects.count(), PhotometryReducedDatum.objects.count()) == counts


def test_replayalerts_publish_splits_a_many_alert_file_into_messages(kafka_broker, settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    topics = _topics(kafka_broker, "fink-lsst-files")
    topic = topics["fink-lsst-files"]
    call_command("replayalerts", str(s.FINK_LSST), "--topic", topic, "--publish", "--url", kafka_broker.url,
                 stdout=io.StringIO())  # fmt: skip
    handlers = {topic: "tom_mma.handlers.optical.fink_lsst_handler"}
    stats = ReliableHopskotchAlertStream(**_options(handlers)).listen(max_messages=3, idle_timeout=15)
    assert stats["handled"] == 3
    assert ArchivedAlert.objects.filter(topic=topic).count() == 3
    assert Target.objects.count() == 3
