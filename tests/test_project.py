"""Project-level checks: migrations match the models, system checks, each check id."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.test import override_settings

from tom_mma import checks as mma_checks
from tom_mma_broker import checks as broker_checks


@pytest.mark.django_db
def test_migrations_match_the_models():
    out = io.StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out)  # exits non-zero on a missing migration
    assert "No changes detected" in out.getvalue()


def test_manage_py_check_is_clean():
    out = io.StringIO()
    call_command("check", stdout=out)
    assert "no issues" in out.getvalue()


def test_unknown_settings_keys_are_reported():
    with override_settings(TOM_MMA_BROKER={"BATCH_SIZ": 5}, TOM_MMA={"MERGE_RADIUS": 1}):
        assert [m.id for m in broker_checks.check_settings_keys()] == ["tom_mma_broker.W001"]
        assert [m.id for m in mma_checks.check_settings_keys()] == ["tom_mma.W001"]


def test_handler_paths_must_import():
    streams = [
        {
            "NAME": broker_checks.RELIABLE_STREAM,
            "OPTIONS": {
                "URL": "embedded",
                "TOPIC_HANDLERS": {
                    "a": "tests.handlers.record",
                    "b": "tests.handlers.nope",
                    "c": None,
                    "d": "tests.handlers.CALLS",
                },
            },
        }
    ]
    with override_settings(ALERT_STREAMS=streams):
        messages = broker_checks.check_topic_handlers()
    assert [m.id for m in messages] == ["tom_mma_broker.E001", "tom_mma_broker.E001"]
    assert "tests.handlers.nope" in messages[0].msg and "not callable" in messages[1].msg


def test_batching_settings_must_be_positive():
    with override_settings(TOM_MMA_BROKER={"BATCH_SIZE": 0, "MAX_HANDLER_ATTEMPTS": "3"}):
        assert [m.id for m in broker_checks.check_batching()] == ["tom_mma_broker.E002"] * 2


def test_publishing_needs_topic_credentials_and_a_sane_floor():
    ok = {"RESULTS_TOPIC": "r", "KAFKA_URL": "embedded", "PUBLISH_FLOOR": 0.2}
    with override_settings(TOM_MMA_BROKER=ok):
        assert broker_checks.check_publishing() == []
    bad = {"RESULTS_TOPIC": "", "KAFKA_URL": "kafka://kafka.scimma.org", "PUBLISH_FLOOR": 2}
    with override_settings(TOM_MMA_BROKER=bad):
        assert [m.id for m in broker_checks.check_publishing()] == [
            "tom_mma_broker.E003",
            "tom_mma_broker.E003",
            "tom_mma_broker.E004",
        ]
    with override_settings(TOM_MMA_BROKER={**bad, "PUBLISH_ENABLED": False}):
        assert broker_checks.check_publishing() == []


def test_classifier_artifact_must_exist_and_match(tmp_path):
    assert broker_checks.check_classifier_artifact() == []  # the shipped artifact
    with override_settings(TOM_MMA_BROKER={"CLASSIFIER_ARTIFACT": str(tmp_path / "missing.skops")}):
        [message] = broker_checks.check_classifier_artifact()
    assert message.id == "tom_mma_broker.E005" and "missing" in message.msg
