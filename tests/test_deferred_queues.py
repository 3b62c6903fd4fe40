"""In eager mode, the stream thread's tasks run on one background thread per Celery queue they are routed to.

A TOM that routes its facility tasks to a queue of their own (``CELERY_TASK_ROUTES``, docs/running.md) keeps
classifying while a facility hangs, with a worker per queue and, the same, in eager mode (the demo). What is
checked is an order of events (a task behind the blocked one has run, or has not, while the blocked one still
waits for the test to release it), never a duration.
"""

from __future__ import annotations

import threading

import pytest
from celery import current_app, shared_task

from tom_mma import deferred

_events: dict[str, threading.Event] = {}


@shared_task(name="tests.deferred_queues.hold")
def hold(key: str) -> None:
    """A facility that answers when the test says so."""
    _events[f"{key}-started"].set()
    assert _events[f"{key}-release"].wait(60), "the test never released the facility"


@shared_task(name="tests.deferred_queues.mark")
def mark(key: str) -> None:
    _events[f"{key}-marked"].set()


@pytest.fixture
def routes():
    """Set ``task_routes`` for a test (Celery caches its router: it is rebuilt, and restored afterwards)."""
    app = current_app
    saved = app.conf.task_routes

    def use(value) -> None:
        app.conf.task_routes = value
        app.amqp.flush_routes()
        app.amqp.__dict__.pop("router", None)

    yield use
    deferred.drain(60)
    use(saved)


def _events_for(key: str) -> None:
    for what in ("started", "release", "marked"):
        _events[f"{key}-{what}"] = threading.Event()


def test_a_task_routed_to_a_queue_of_its_own_does_not_hold_the_others(routes):
    assert current_app.conf.task_always_eager
    routes({"tests.deferred_queues.hold": {"queue": "facilities"}})
    _events_for("own")
    with deferred.stream_thread():
        deferred.send(hold, "own")
        deferred.send(mark, "own")
    try:
        assert _events["own-started"].wait(30)
        # the facility still holds its thread, and the task behind it, on the default queue, ran meanwhile
        assert _events["own-marked"].wait(30)
        assert not _events["own-release"].is_set()
    finally:
        _events["own-release"].set()
    assert deferred.drain(60)


def test_on_one_queue_the_tasks_run_in_the_order_sent(routes):
    routes({})
    _events_for("one")
    with deferred.stream_thread():
        deferred.send(hold, "one")
        deferred.send(mark, "one")
    try:
        assert _events["one-started"].wait(30)
        # one thread for the one queue: the task behind the held one cannot have run (it runs after it)
        assert not _events["one-marked"].is_set()
    finally:
        _events["one-release"].set()
    assert deferred.drain(60)
    assert _events["one-marked"].is_set()


def test_the_queue_is_read_as_celery_routes_it(routes):
    routes({"tests.deferred_queues.hold": {"queue": "facilities"}})
    assert deferred._queue_of(hold) == "facilities"
    assert deferred._queue_of(mark) == current_app.conf.task_default_queue
