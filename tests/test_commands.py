"""Management commands: replayalerts (same path as the stream) and kafkabroker."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.test import override_settings

from tests.conftest import stream_config
from tests.testapp.models import HandledMessage
from tom_mma_broker.models import ArchivedAlert, QuarantinedAlert
from tom_mma_broker.streams import ReliableHopskotchAlertStream

DATA = Path(__file__).parent / "data"


def run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


@pytest.fixture
def alert_folder(tmp_path) -> Path:
    folder = tmp_path / "alerts"
    folder.mkdir()
    for i in range(3):
        (folder / f"a{i}.json").write_text(json.dumps({"seq": i}))
    (folder / "poison.json").write_text(json.dumps({"seq": 9, "poison": True}))
    (folder / "broken.json").write_text('{"seq": ')
    (folder / "ztf.avro").write_bytes((DATA / "ztf" / "472263571115115000.avro").read_bytes())
    (folder / "notes.md").write_text("not an alert")
    return folder


@pytest.mark.django_db
def test_replayalerts_runs_the_configured_handler_and_dedups(alert_folder):
    with override_settings(ALERT_STREAMS=[stream_config("replay.topic")]):
        out = run("replayalerts", str(alert_folder), "--topic", "replay.topic")
        lines = out.splitlines()
        assert len(lines) == 7  # 6 alert files (notes.md is not one) and a summary
        assert sum(line.startswith("handled") for line in lines) == 3
        quarantined = [line for line in lines if line.startswith("quarantined")]
        assert any("broken.json: decode: DecodeError: invalid JSON" in q for q in quarantined)
        assert any("poison.json: handle: ValueError: poison message 9" in q for q in quarantined)
        # the Avro file has no 'seq': the handler raises KeyError, so it is quarantined too
        assert any("ztf.avro: handle: KeyError" in q for q in quarantined)
        assert lines[-1] == "6 messages: 3 handled, 0 archived, 0 duplicate, 3 quarantined"

        again = run("replayalerts", str(alert_folder), "--topic", "replay.topic")
        assert again.splitlines()[-1] == "6 messages: 0 handled, 0 archived, 6 duplicate, 0 quarantined"
    assert HandledMessage.objects.count() == 3
    assert QuarantinedAlert.objects.count() == 3
    assert ArchivedAlert.objects.count() == 6


@pytest.mark.django_db
def test_replayalerts_archives_only_for_a_topic_without_handler(alert_folder):
    out = run("replayalerts", str(alert_folder / "ztf.avro"), "--topic", "nobody.listens")
    assert out.splitlines()[0].startswith("archived")
    assert ArchivedAlert.objects.get().content["objectId"] == "ZTF17aaajnnn"


@pytest.mark.django_db
def test_replayalerts_missing_path():
    with pytest.raises(CommandError, match="no such file"):
        run("replayalerts", "/nonexistent/alerts", "--topic", "x")


@pytest.mark.kafka
@pytest.mark.django_db(transaction=True)
def test_replayalerts_publish_then_the_stream_handles_them(kafka_broker, topic, alert_folder):
    out = run(
        "replayalerts",
        str(alert_folder / "a0.json"),
        str(alert_folder / "a1.json"),
        "--topic",
        topic,
        "--publish",
        "--url",
        kafka_broker.url,
    )
    assert out.splitlines()[-1] == f"2 messages published to {topic}"
    stats = ReliableHopskotchAlertStream(**stream_config(topic)["OPTIONS"]).listen(max_messages=2, idle_timeout=10)
    assert stats["handled"] == 2
    assert sorted(HandledMessage.objects.values_list("seq", flat=True)) == [0, 1]
    # hop's _id header became the archive key
    assert all(key.startswith("id:") for key in ArchivedAlert.objects.values_list("key", flat=True))


def test_kafkabroker_start_status_stop(tmp_path):
    with override_settings(
        TOM_MMA_BROKER={"EMBEDDED_STATE_DIR": str(tmp_path), "EMBEDDED_TOPICS": ["x.one"]},
        ALERT_STREAMS=[stream_config("x.two")],
    ):
        assert "not running" in run("kafkabroker", "status")
        started = run("kafkabroker", "start")
        try:
            assert "embedded Kafka broker running: kafka://127.0.0.1:" in started
            assert "topics: x.one, x.two" in started
            status = json.loads(run("kafkabroker", "status", "--json"))
            assert status["running"] and status["host"] == "127.0.0.1"
            # a second start reuses the running broker
            assert f"pid {status['pid']}" in run("kafkabroker", "start")
            from confluent_kafka.admin import AdminClient

            topics = AdminClient({"bootstrap.servers": f"127.0.0.1:{status['port']}"}).list_topics(timeout=5).topics
            assert {"x.one", "x.two"} <= set(topics)
            # `topics` lists and creates nothing; --create creates
            listed = run("kafkabroker", "topics").splitlines()
            assert "x.one  (1 partition)" in listed and listed[-1] == f"{len(listed) - 1} topics"
            assert "x.three" not in run("kafkabroker", "topics")
            with pytest.raises(CommandError, match="add --create"):
                run("kafkabroker", "topics", "--topic", "x.three")
            assert "x.three" not in json.loads(run("kafkabroker", "topics", "--json"))
            assert run("kafkabroker", "topics", "--create", "--topic", "x.three").startswith("created: x.three")
            assert json.loads(run("kafkabroker", "topics", "--json"))["x.three"] == 1
        finally:
            assert "stopped" in run("kafkabroker", "stop")
        assert "not running" in run("kafkabroker", "status")
        with pytest.raises(CommandError, match="not running"):
            run("kafkabroker", "topics")


@pytest.mark.kafka
@pytest.mark.django_db(transaction=True)
def test_replayalerts_publish_defaults_to_the_broker_settings(kafka_broker, topic, alert_folder):
    """Without --url, the broker of TOM_MMA_BROKER['KAFKA_URL'] (before: a top-level settings.KAFKA_URL)."""
    broker = {**settings.TOM_MMA_BROKER, "KAFKA_URL": kafka_broker.url}
    with override_settings(TOM_MMA_BROKER=broker, KAFKA_URL="kafka://127.0.0.1:1"):
        out = run("replayalerts", str(alert_folder / "a0.json"), "--topic", topic, "--publish")
    assert out.splitlines()[-1] == f"1 messages published to {topic}"
    stats = ReliableHopskotchAlertStream(**stream_config(topic)["OPTIONS"]).listen(max_messages=1, idle_timeout=10)
    assert stats["handled"] == 1


@pytest.mark.django_db
def test_replayalerts_publish_passes_the_broker_credentials(alert_folder, monkeypatch):
    """SCRAM cannot run against the embedded broker, so this stops at the hop Auth handed to the producer."""
    from hop.auth import Auth

    from tom_mma_broker.management.commands import replayalerts

    calls = []

    def fake_publish(paths, topic, url, auth=False):
        calls.append((url, auth))
        return iter(())

    monkeypatch.setattr(replayalerts, "publish_files", fake_publish)
    creds = {**settings.TOM_MMA_BROKER, "KAFKA_URL": "kafka://kafka.example.org", "KAFKA_USERNAME": "u"}
    with override_settings(TOM_MMA_BROKER={**creds, "KAFKA_PASSWORD": "p"}):
        run("replayalerts", str(alert_folder / "a0.json"), "--topic", "t", "--publish")
    with override_settings(TOM_MMA_BROKER={**settings.TOM_MMA_BROKER, "KAFKA_USERNAME": ""}):
        run("replayalerts", str(alert_folder / "a0.json"), "--topic", "t", "--publish", "--url", "kafka://x:9092")
    (url, auth), (plain_url, no_auth) = calls
    assert url == "kafka://kafka.example.org"
    assert isinstance(auth, Auth) and auth.username == "u" and auth.password == "p"
    assert plain_url == "kafka://x:9092" and no_auth is False


GCN_TEXT = b"""TITLE:            GCN/LVC NOTICE
NOTICE_DATE:      Thu 17 Aug 17 13:21:42 UT
NOTICE_TYPE:      LVC Preliminary
TRIGGER_NUM:      S999999zz
COMMENTS:         A made-up notice for the tom-mma tests; not a real event.
"""


@pytest.mark.django_db
def test_replayalerts_reads_gcn_classic_text_files(tmp_path):
    """``.txt`` files that are GCN Classic text notices (a made-up sample) are decoded as such."""
    (tmp_path / "notice.txt").write_bytes(GCN_TEXT)
    (tmp_path / "readme.txt").write_text("just some notes")
    out = run("replayalerts", str(tmp_path), "--topic", "gcn.classic.text")
    assert out.splitlines()[-1] == "2 messages: 0 handled, 2 archived, 0 duplicate, 0 quarantined"
    notice = ArchivedAlert.objects.get(format="gcntextnotice")
    assert notice.content["fields"]["trigger_num"] == "S999999zz"
    assert ArchivedAlert.objects.get(format="blob").content is None


@pytest.mark.kafka
@pytest.mark.django_db(transaction=True)
def test_replayalerts_publishes_gcn_text_with_its_format(kafka_broker, topic, tmp_path):
    (tmp_path / "notice.txt").write_bytes(GCN_TEXT)
    run("replayalerts", str(tmp_path / "notice.txt"), "--topic", topic, "--publish", "--url", kafka_broker.url)
    stream = ReliableHopskotchAlertStream(**stream_config(topic, handler=None)["OPTIONS"])
    stream.listen(max_messages=1, idle_timeout=10)
    row = ArchivedAlert.objects.get(topic=topic)
    assert ["_format", "gcntextnotice"] in row.headers and row.content["fields"]["notice_type"] == "LVC Preliminary"


@pytest.mark.django_db
def test_replayalerts_refuses_a_topic_name_kafka_would_refuse(alert_folder):
    with pytest.raises(CommandError, match="at most 249"):
        run("replayalerts", str(alert_folder / "a0.json"), "--topic", "x" * 250)


def _our_commands() -> list[tuple[str, str]]:
    """(app, command) of every management command of the two apps."""
    from django.core.management import get_commands

    return sorted((app, name) for name, app in get_commands().items() if app in ("tom_mma", "tom_mma_broker"))


@pytest.mark.parametrize(("app", "name"), _our_commands())
def test_every_command_help_ends_with_examples(app, name):
    from django.core.management import load_command_class

    help_text = load_command_class(app, name).create_parser("manage.py", name).format_help()
    tail = help_text.rstrip().split("\n\nexamples:\n")
    assert len(tail) == 2, f"{name} --help has no examples section"
    assert all(line.strip().startswith(f"./manage.py {name}") for line in tail[1].splitlines())
