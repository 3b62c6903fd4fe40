"""Several ``readstreams`` processes in one consumer group share a topic's partitions; one killed loses nothing.

Two real ``readstreams`` processes read a four-partition topic of the embedded broker in one group with
``SHARE_PARTITIONS``; the handler notes which process ran it (:func:`tests.handlers.record_pid`). Both get
partitions (each handles messages), then one is ``kill -9``-ed mid-stream: the other takes over its
partitions after the session timeout and every message is handled exactly once (no seq twice, none missing).
The same for optical alerts on the Fink stream (always a group member): every Fink ZTF alert of many objects
archived once, one Target per object, each Target's photometry and cutouts once. Nothing is mocked; what is
checked is an order of events and counts, never a duration.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Producer
from tom_dataproducts.models import DataProduct, PhotometryReducedDatum
from tom_targets.models import Target

from tests import optical_samples as s
from tests.conftest import child_env, publish_json, stream_config
from tests.test_stream import wait_for
from tests.testapp.models import HandledMessage
from tom_mma_broker.embedded import create_topics
from tom_mma_broker.models import ArchivedAlert, QuarantinedAlert, TopicHealth

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    # several readstreams processes writing at once need a database server (SQLite serialises its writers:
    # docs/running.md says one readstreams on SQLite); the PostgreSQL leg runs these
    pytest.mark.skipif(not os.environ.get("TEST_DATABASE_URL"), reason="several writer processes need PostgreSQL"),
]


def _readstreams(config: dict, tmp_path: Path, name: str, **env: str) -> subprocess.Popen:
    env = child_env(TOM_MMA_TEST_ALERT_STREAMS=json.dumps([config]), TOM_MMA_TEST_BATCH_SIZE="50", **env)
    return subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "readstreams"], cwd=ROOT, env=env,
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / f"{name}.log", "w"),
    )  # fmt: skip


def _stop(*procs: subprocess.Popen) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait()


def _pids() -> set[str]:
    return {topic.rsplit("@", 1)[-1] for topic in HandledMessage.objects.values_list("topic", flat=True).distinct()}


def test_two_processes_share_the_partitions_and_one_killed_loses_and_repeats_nothing(kafka_broker, tmp_path):
    topic = f"test.groups.{uuid.uuid4().hex[:8]}"
    create_topics(kafka_broker.bootstrap, [topic], partitions=4)
    total = 2000
    publish_json(kafka_broker, topic, [{"seq": i, "sleep_ms": 10} for i in range(total)])
    config = stream_config(topic, handler="tests.handlers.record_pid")
    config["OPTIONS"].update(SHARE_PARTITIONS=True, SESSION_TIMEOUT_MS=6000)
    first = _readstreams(config, tmp_path, "first")
    second = _readstreams(config, tmp_path, "second")
    try:
        # both are members with partitions of their own: each has handled messages
        assert wait_for(lambda: len(_pids()) == 2, 120), f"one process read everything: {_pids()}"
        assert ArchivedAlert.objects.filter(topic=topic).count() < total, "no message left for the kill"
        first.send_signal(signal.SIGKILL)
        first.wait()
        assert wait_for(lambda: ArchivedAlert.objects.filter(topic=topic).count() >= total, 180), (
            tmp_path / "second.log"
        ).read_text()[-3000:]
    finally:
        _stop(first, second)
    assert ArchivedAlert.objects.filter(topic=topic).count() == total
    seqs = list(HandledMessage.objects.values_list("seq", flat=True))
    assert len(seqs) == total and set(seqs) == set(range(total))  # each handled once: none twice, none lost
    partitions = set(ArchivedAlert.objects.filter(topic=topic).values_list("partition", flat=True))
    assert partitions == {0, 1, 2, 3}
    # shared, not both reading everything: a message is read twice only around a rebalance (an uncommitted
    # batch of the partitions that moved), not once per process
    duplicates = TopicHealth.objects.get(topic=topic).duplicates
    assert duplicates < total // 4, duplicates


def _fink_ztf_alerts(objects: int, per_object: int) -> list[tuple[bytes, bytes, str]]:
    """Fink ZTF livestream messages: the real sample moved to ``objects`` positions, ``per_object`` nights each."""
    (base,), schema = s.records(s.FINK_ZTF)
    out = []
    for o in range(objects):
        for night in range(per_object):
            record = copy.deepcopy(base)
            shift = night * 1.0
            record["objectId"] = f"ZTF26grp{o:04d}"
            record["candid"] = 3_000_000_000 + o * 100 + night
            record["candidate"] = {**record["candidate"], "ra": 10.0 + o * 0.01, "dec": -5.0,
                                   "jd": record["candidate"]["jd"] + shift, "candid": record["candid"]}  # fmt: skip
            record["prv_candidates"] = [
                {**p, "jd": p["jd"] + shift, **({"ra": 10.0 + o * 0.01, "dec": -5.0} if p.get("ra") else {})}
                for p in record.get("prv_candidates") or []
            ]
            value, key = s.fink_message(record, schema)
            out.append((value, key, record["objectId"]))
    return out


def test_two_fink_processes_one_killed_every_optical_alert_handled_once(kafka_broker, tmp_path, settings):
    topic = f"test.fink-groups.{uuid.uuid4().hex[:8]}"
    create_topics(kafka_broker.bootstrap, [topic], partitions=4)
    messages = _fink_ztf_alerts(objects=40, per_object=3)
    producer = Producer({"bootstrap.servers": kafka_broker.bootstrap})
    for value, key, _ in messages:  # no Kafka key of the object: an object's alerts land on several partitions
        producer.produce(topic, value=value, key=key)
    assert producer.flush(30) == 0
    config = {
        "ACTIVE": True,
        "NAME": "tom_mma_broker.fink.FinkAlertStream",
        "OPTIONS": {"URL": "embedded", "TOPIC": topic, "SURVEY": "ztf", "GROUP_ID": f"fink-{uuid.uuid4().hex[:6]}",
                    "SESSION_TIMEOUT_MS": 6000},
    }  # fmt: skip
    media = tmp_path / "media"
    tom_mma = json.dumps({"OPTICAL_CUTOUTS_KEPT": 10})
    first = _readstreams(config, tmp_path, "first", TOM_MMA_TEST_MEDIA_ROOT=str(media), TOM_MMA_TEST_TOM_MMA=tom_mma)
    second = _readstreams(config, tmp_path, "second", TOM_MMA_TEST_MEDIA_ROOT=str(media), TOM_MMA_TEST_TOM_MMA=tom_mma)
    try:
        assert wait_for(lambda: ArchivedAlert.objects.filter(topic=topic).count() >= len(messages) // 3, 120)
        first.send_signal(signal.SIGKILL)
        first.wait()
        assert wait_for(lambda: ArchivedAlert.objects.filter(topic=topic).count() >= len(messages), 180), (
            tmp_path / "second.log"
        ).read_text()[-3000:]
    finally:
        _stop(first, second)
    assert not QuarantinedAlert.objects.exists(), list(QuarantinedAlert.objects.values_list("reason", flat=True))
    assert ArchivedAlert.objects.filter(topic=topic).count() == len(messages)
    names = {name for _, _, name in messages}
    targets = Target.objects.filter(name__in=names)
    assert targets.count() == len(names)  # one Target per object, though its alerts came through both processes
    one = targets.first()
    photometry = PhotometryReducedDatum.objects.filter(target=one)
    keys = list(photometry.values_list("timestamp", "bandpass", "brightness", "limit"))
    assert keys and len(keys) == len(set(keys))  # every point once
    stamps = list(DataProduct.objects.filter(target=one).values_list("product_id", flat=True))
    assert len(stamps) == len(set(stamps))  # every cutout once
