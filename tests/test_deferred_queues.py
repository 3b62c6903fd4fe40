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
    """Set ``task_routes`` for a test, through Celery's public API, and restore them afterwards.

    Celery routes by the router it built (``app.amqp.router``) until it is given another: the routes are read
    again (``flush_routes``) and a new router put in its place (``Router()``, as the property builds it).
    """
    app = current_app
    saved = app.conf.task_routes

    def use(value) -> None:
        app.conf.task_routes = value
        app.amqp.flush_routes()
        app.amqp.router = app.amqp.Router()

    yield use
    deferred.drain(60)
    use(saved)


@pytest.mark.parametrize(
    "task_routes, runs_meanwhile",
    [
        # a queue of its own: the facility holds its thread, and the task behind it, on the default queue, runs
        ({"tests.deferred_queues.hold": {"queue": "facilities"}}, True),
        # one queue, one thread: the task behind the held one cannot have run (it runs after it, in order)
        ({}, False),
    ],
    ids=["own-queue", "one-queue"],
)
def test_a_task_on_another_queue_runs_while_one_is_held_and_on_the_same_queue_after_it(
    routes, task_routes, runs_meanwhile
):
    assert current_app.conf.task_always_eager
    routes(task_routes)
    key = "own" if runs_meanwhile else "one"
    for what in ("started", "release", "marked"):
        _events[f"{key}-{what}"] = threading.Event()
    with deferred.stream_thread():
        deferred.send(hold, key)
        deferred.send(mark, key)
    try:
        assert _events[f"{key}-started"].wait(30)
        if runs_meanwhile:
            assert _events[f"{key}-marked"].wait(30)
            assert not _events[f"{key}-release"].is_set()  # the held task still waits
        else:
            assert not _events[f"{key}-marked"].is_set()
    finally:
        _events[f"{key}-release"].set()
    assert deferred.drain(60)
    assert _events[f"{key}-marked"].is_set()


def test_the_queue_is_read_as_celery_routes_it_and_read_again_under_new_routes(routes):
    routes({"tests.deferred_queues.hold": {"queue": "facilities"}})
    assert deferred._queue_of(hold) == "facilities"
    assert deferred._queue_of(hold) == "facilities"  # from the cache
    assert deferred._queue_of(mark) == current_app.conf.task_default_queue
    routes({"tests.deferred_queues.mark": {"queue": "classify"}})
    assert deferred._queue_of(hold) == current_app.conf.task_default_queue
    assert deferred._queue_of(mark) == "classify"
