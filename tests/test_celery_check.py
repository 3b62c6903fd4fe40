"""tom_mma.E070: background work cannot be lost silently to a Celery broker nobody configured."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from tom_mma.checks import check_celery


@pytest.fixture
def celery_unconfigured():
    """The TOM's Celery app as a stock TOM leaves Celery's: no broker, not eager."""
    from example_tom.celery import app

    old = {"broker_url": app.conf.broker_url, "task_always_eager": app.conf.task_always_eager}
    app.conf.update(broker_url=None, task_always_eager=False)
    yield app
    app.conf.update(**old)


def test_no_error_when_tasks_run_eagerly_or_have_a_broker(celery_unconfigured):
    celery_unconfigured.conf.task_always_eager = True
    assert check_celery() == []
    celery_unconfigured.conf.update(task_always_eager=False, broker_url="redis://127.0.0.1:6379/0")
    assert check_celery() == []


def test_an_error_with_both_ways_out_when_nothing_is_configured(celery_unconfigured, settings):
    del settings.CELERY_BROKER_URL
    settings.CELERY_TASK_ALWAYS_EAGER = False
    [error] = check_celery()
    assert error.id == "tom_mma.E070" and error.is_serious()
    assert "no Celery broker is configured" in error.msg and "amqp://localhost" in error.msg
    assert 'CELERY_BROKER_URL = "redis://127.0.0.1:6379/0"' in error.hint
    assert "CELERY_TASK_ALWAYS_EAGER = True" in error.hint and "celery.py" in error.hint


def test_settings_that_no_celery_app_reads_are_named(celery_unconfigured, settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:6379/0"
    settings.CELERY_TASK_ALWAYS_EAGER = False
    [error] = check_celery()
    assert "CELERY_BROKER_URL is set in Django settings, but the Celery app in use does not read them" in error.msg


@pytest.mark.django_db
@pytest.mark.parametrize("command", ["check", "migrate", "readstreams"])
def test_the_error_stops_check_migrate_and_readstreams(celery_unconfigured, settings, command):
    settings.CELERY_BROKER_URL = ""
    settings.CELERY_TASK_ALWAYS_EAGER = False
    with pytest.raises(SystemCheckError, match="tom_mma.E070"):
        options = {} if command == "check" else {"skip_checks": False}
        call_command(command, stdout=io.StringIO(), stderr=io.StringIO(), **options)
