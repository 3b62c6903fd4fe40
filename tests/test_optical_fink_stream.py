"""The Fink livestream source: Fink's wire format on the real embedded broker, several topics, both surveys."""

from __future__ import annotations

import logging
import uuid

import pytest
from confluent_kafka import Producer
from django.core.exceptions import ImproperlyConfigured
from tom_dataproducts.models import PhotometryReducedDatum
from tom_targets.models import Target

from tests import optical_samples as s
from tom_mma.optical.alerts import normalise
from tom_mma_broker.embedded import create_topics
from tom_mma_broker.fink import FinkAlertStream, fink_topic_handlers
from tom_mma_broker.models import ArchivedAlert


def test_a_tom_fink_configuration_works_by_changing_the_name():
    # tom_fink 2.0.1's documented OPTIONS, unchanged
    options = {
        "URL": "134.158.74.95:24499", "USERNAME": "me", "PASSWORD": "secret", "GROUP_ID": "my_group",
        "TOPIC": "fink_kn_candidates_ztf", "MAX_POLL_NUMBER": 1e10, "TIMEOUT": 10,
        "TOPIC_HANDLERS": {"fink.stream": "tom_fink.alertstream.alert_logger"},
    }  # fmt: skip
    stream = FinkAlertStream(**options)
    assert stream.topics() == ["fink_kn_candidates_ztf"]
    config = stream.consumer_config()
    assert config["bootstrap.servers"] == "134.158.74.95:24499" and config["group.id"] == "my_group"
    assert (config["sasl.username"], config["sasl.password"], config["sasl.mechanism"]) == (
        "me",
        "secret",
        "SCRAM-SHA-512",
    )
    assert config["enable.auto.commit"] is False


def test_credentials_from_the_environment_never_logged(monkeypatch, caplog):
    monkeypatch.setenv("FINK_USERNAME", "env-user")
    monkeypatch.setenv("FINK_PASSWORD", "env-secret-password")
    with caplog.at_level(logging.DEBUG):
        stream = FinkAlertStream(URL="fink:9093", TOPICS=["a", "b"], SURVEY="lsst")
        config = stream.consumer_config()
    assert config["sasl.password"] == "env-secret-password"
    assert "env-secret-password" not in caplog.text
    assert fink_topic_handlers({"TOPICS": ["a"], "SURVEY": "lsst"}) == {
        "a": "tom_mma.handlers.optical.fink_lsst_handler"
    }
    with pytest.raises(ImproperlyConfigured, match="SURVEY"):
        FinkAlertStream(URL="fink:9093", TOPIC="a", SURVEY="hsc")


@pytest.mark.slow  # two consumer-group joins on the embedded broker (about 25 s)
@pytest.mark.kafka
@pytest.mark.django_db(transaction=True)
def test_fink_stream_reads_ztf_and_rubin_topics_in_fink_wire_format(kafka_broker, settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    ztf_topic, lsst_topic = (f"fink_{kind}_{uuid.uuid4().hex[:8]}" for kind in ("ztf", "lsst"))
    create_topics(kafka_broker.bootstrap, [ztf_topic, lsst_topic])
    producer = Producer({"bootstrap.servers": kafka_broker.bootstrap})
    (ztf,), ztf_schema = s.records(s.FINK_ZTF)
    value, key = s.fink_message(ztf, ztf_schema)
    producer.produce(ztf_topic, value=value, key=key)
    lsst, lsst_schema = s.records(s.FINK_LSST)
    for record in lsst:
        value, key = s.fink_message(record, lsst_schema)
        producer.produce(lsst_topic, value=value, key=key)
    producer.produce(lsst_topic, value=b"\x02garbage", key=key)  # does not match its schema: quarantined
    producer.flush(10)

    stream = FinkAlertStream(
        URL="embedded", TOPICS=[ztf_topic], SURVEY="ztf", GROUP_ID=f"g-{uuid.uuid4().hex[:8]}",
        TOPIC_HANDLERS={lsst_topic: "tom_mma.handlers.optical.fink_lsst_handler"}, SESSION_TIMEOUT_MS=6000,
    )  # fmt: skip
    stats = stream.listen(max_messages=1 + len(lsst) + 1, idle_timeout=20)
    assert stats["handled"] == 1 + len(lsst) and stats["quarantined"] == 1
    assert set(Target.objects.values_list("name", flat=True)) == {normalise(r).name for r in [ztf, *lsst]}
    assert ArchivedAlert.objects.filter(topic=lsst_topic).count() == len(lsst) + 1
    count = PhotometryReducedDatum.objects.count()

    # the same group again: its offsets were committed, nothing is read twice
    again = FinkAlertStream(
        URL="embedded", TOPICS=[ztf_topic], GROUP_ID=stream.group_id,
        TOPIC_HANDLERS={lsst_topic: "tom_mma.handlers.optical.fink_lsst_handler"}, SESSION_TIMEOUT_MS=6000,
    ).listen(idle_timeout=5)  # fmt: skip
    assert sum(again.values()) == 0 and PhotometryReducedDatum.objects.count() == count
