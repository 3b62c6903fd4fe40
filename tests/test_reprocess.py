"""reprocessalerts and the one re-handling path: archived messages run again through today's handler."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import OperationalError
from django.test import override_settings

from tests import handlers
from tests.conftest import stream_config
from tests.testapp.models import HandledMessage
from tom_mma_broker.models import ArchivedAlert, QuarantinedAlert, TopicHealth
from tom_mma_broker.quarantine import rehandle

DATA = Path(__file__).parent / "data"


def run(*args) -> list[str]:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue().splitlines()


@pytest.fixture
def files(tmp_path) -> Path:
    folder = tmp_path / "alerts"
    folder.mkdir()
    for i in range(3):
        (folder / f"a{i}.json").write_text(json.dumps({"seq": i}))
    return folder


@pytest.mark.django_db
def test_messages_archived_without_a_handler_are_handled_once_one_is_configured(files):
    assert [line.split()[0] for line in run("replayalerts", str(files), "--topic", "late.topic")] == [
        "archived", "archived", "archived", "3",
    ]  # fmt: skip
    assert run("replayalerts", str(files), "--topic", "late.topic")[-1].endswith("3 duplicate, 0 quarantined")
    with override_settings(ALERT_STREAMS=[stream_config("late.topic", handler="tests.handlers.record_once")]):
        lines = run("reprocessalerts", "--topic", "late.topic", "--status", "archived")
        assert [line.split()[0] for line in lines[:-1]] == ["handled"] * 3
        assert lines[-1] == "3 messages: 3 handled, 0 archived, 0 duplicate, 0 quarantined"
        assert "late.topic" in lines[0] and lines[0].split()[1].startswith("sha256:")
        # nothing is archived any more; handled ones run again make nothing twice
        assert run("reprocessalerts", "--topic", "late.topic", "--status", "archived")[-1].startswith("0 messages")
        assert run("reprocessalerts", "--topic", "late.topic")[-1].startswith("3 messages: 3 handled")
    assert sorted(HandledMessage.objects.values_list("seq", flat=True)) == [0, 1, 2]
    assert set(ArchivedAlert.objects.values_list("status", flat=True)) == {"handled"}
    health = TopicHealth.objects.get(topic="late.topic")
    assert (health.messages_archived, health.messages_handled) == (0, 3)


@pytest.mark.django_db
def test_reprocess_runs_in_archive_order_and_by_received_time(files):
    run("replayalerts", str(files), "--topic", "t.order")
    first, second, third = ArchivedAlert.objects.order_by("pk")
    ArchivedAlert.objects.filter(pk=first.pk).update(received="2026-11-30T12:00:00Z")
    ArchivedAlert.objects.filter(pk=second.pk).update(received="2026-12-01T12:00:00Z")
    ArchivedAlert.objects.filter(pk=third.pk).update(received="2026-12-02T12:00:00Z")
    handlers.CALLS.clear()
    with override_settings(ALERT_STREAMS=[stream_config("t.order", handler="tests.handlers.record_once")]):
        lines = run("reprocessalerts", "--topic", "t.order", "--since", "2026-12-01", "--until", "2026-12-02T00:00Z")
        assert lines[-1].startswith("1 messages: 1 handled")
        assert second.key in lines[0]
        lines = run("reprocessalerts", "--topic", "t.order")
    keys = [line.split()[1] for line in lines[:-1]]
    assert keys == [first.key, second.key, third.key]
    with pytest.raises(CommandError, match="not an ISO date"):
        run("reprocessalerts", "--topic", "t.order", "--since", "yesterday")


@pytest.mark.django_db
def test_quarantined_messages_run_again_after_the_fix_and_keep_their_first_reason(tmp_path):
    (tmp_path / "m.json").write_text(json.dumps({"seq": 5, "poison": True}))
    with override_settings(ALERT_STREAMS=[stream_config("t.fix", handler="tests.handlers.requires_marker")]):
        assert run("replayalerts", str(tmp_path / "m.json"), "--topic", "t.fix")[0].startswith("quarantined")
    alert = ArchivedAlert.objects.get(topic="t.fix")
    with override_settings(ALERT_STREAMS=[stream_config("t.fix", handler="tests.handlers.record")]):
        assert rehandle(alert.pk) == "failed"  # a second, different failure
    record = QuarantinedAlert.objects.get(alert=alert)
    assert record.first_reason == "LookupError: marker row missing"
    assert record.reason == "ValueError: poison message 5"
    with override_settings(ALERT_STREAMS=[stream_config("t.fix", handler="tests.handlers.record_once")]):
        lines = run("reprocessalerts", "--topic", "t.fix", "--status", "quarantined")  # the operator's fix
    assert lines[0].startswith("handled") and lines[-1].startswith("1 messages: 1 handled")
    record.refresh_from_db()
    assert record.released is not None and record.first_reason == "LookupError: marker row missing"
    health = TopicHealth.objects.get(topic="t.fix")
    assert (health.messages_quarantined, health.messages_handled) == (0, 1)


@pytest.mark.django_db
def test_a_transient_database_error_while_rehandling_counts_nothing_against_the_message(tmp_path):
    """The ingest rule, now shared by the quarantine: the database's failure is raised, not the message's."""
    (tmp_path / "m.json").write_text(json.dumps({"seq": 31, "fail_times": 1}))
    with override_settings(ALERT_STREAMS=[stream_config("t.db", handler="tests.handlers.requires_marker")]):
        run("replayalerts", str(tmp_path / "m.json"), "--topic", "t.db")
    alert = ArchivedAlert.objects.get(topic="t.db")
    attempts = QuarantinedAlert.objects.get(alert=alert).attempts
    handlers.TRANSIENT_DB_FAILURES.clear()
    with override_settings(ALERT_STREAMS=[stream_config("t.db", handler="tests.handlers.transient_db")]):
        with pytest.raises(OperationalError):
            rehandle(alert.pk)
        alert.refresh_from_db()
        assert alert.status == "quarantined"
        assert QuarantinedAlert.objects.get(alert=alert).attempts == attempts  # not counted
        assert rehandle(alert.pk) == "handled"  # the task's retry, once the database is back
    assert HandledMessage.objects.filter(seq=31).count() == 1


@pytest.mark.django_db
def test_a_mock_lvk_notice_is_reported_ignored_with_the_setting_to_change_then_reprocessed():
    sample = DATA / "lvk" / "MS181101ab-preliminary.avro"
    config = stream_config("igwn.gwalert", handler="tom_mma.handlers.lvk.igwn_gwalert_handler")
    with override_settings(ALERT_STREAMS=[config], TOM_MMA={"ACCEPT_MOCK_EVENTS": False}):
        lines = run("replayalerts", str(sample), "--topic", "igwn.gwalert")
    assert lines[0].startswith("ignored") and "MS181101ab is a mock event" in lines[0]
    assert "TOM_MMA['ACCEPT_MOCK_EVENTS'] is False" in lines[0]
    assert lines[-1] == "1 messages: 0 handled, 0 archived, 0 duplicate, 0 quarantined, 1 ignored"
    from tom_mma.models import GWEvent

    assert not GWEvent.objects.exists()
    with override_settings(ALERT_STREAMS=[config], TOM_MMA={"ACCEPT_MOCK_EVENTS": True}):
        lines = run("reprocessalerts", "--topic", "igwn.gwalert")
    assert lines[0].startswith("handled")
    assert GWEvent.objects.filter(superevent_id="MS181101ab").exists()
