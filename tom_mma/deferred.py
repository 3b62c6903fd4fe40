"""Deferred effects: how work leaves the thread that made it necessary.

A stream's thread decodes, stores and enqueues; it never waits on an observatory. Everything slow (a
facility's API, ranking every Target against a new sky map, re-evaluating the observation rules, a
classification) is first a database row written in the ingest transaction (a pending trigger, an event whose
sky map is not ranked yet, a candidate not classified yet), then a Celery task sent after the commit by
:func:`send`, and a periodic sweep sends it again if the send was lost (a Celery broker down at commit time
delays the effect and loses nothing).

With a Celery broker, :func:`send` is ``task.delay``. In eager mode (the demo's embedded default, no worker),
a task sent from a stream's thread (marked by :func:`stream_thread`) runs on a background thread of this
process instead, so that the stream goes on reading while a facility answers: one thread per Celery queue
the task is routed to (``CELERY_TASK_ROUTES``), each running its tasks in the order sent, as one worker per
queue would; so a TOM that routes its facility tasks to a queue of their own keeps classifying while a
facility hangs, in eager mode too. From any other thread a task runs at once, as Celery's eager mode does.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import Any

__all__ = ["collect_on_commit", "drain", "in_stream_thread", "send", "stream_thread"]

logger = logging.getLogger(__name__)

_local = threading.local()
_lock = threading.Lock()
_executors: dict[str, ThreadPoolExecutor] = {}
_futures: set[Future] = set()


@contextmanager
def stream_thread() -> Iterator[None]:
    """Mark the current thread as a stream's for the duration: eager tasks it sends run in the background."""
    previous = getattr(_local, "stream", False)
    _local.stream = True
    try:
        yield
    finally:
        _local.stream = previous


def in_stream_thread() -> bool:
    """Whether the current thread is inside :func:`stream_thread`."""
    return bool(getattr(_local, "stream", False))


def send(task: Any, *args: Any) -> None:
    """Send a Celery task: to the broker, or, in eager mode from a stream's thread, to the background thread.

    Robust: a failure to send (the Celery broker unreachable) is logged, never raised; the periodic sweeps
    find the work in the database and send it again.

    Parameters
    ----------
    task : celery.Task
        A ``@shared_task``.
    *args
        Its arguments (primary keys and other JSON values).
    """
    try:
        if not task.app.conf.task_always_eager:
            task.delay(*args)
        elif in_stream_thread():
            future = _background(_queue_of(task)).submit(_run_eager, task, args)
            with _lock:
                _futures.add(future)
            future.add_done_callback(_forget)
        else:
            # what Celery's eager ``delay`` does, without the producer it acquires (a connection to a broker
            # the TOM has not configured: kombu warns "No hostname was supplied")
            _apply(task, args)
    except Exception:  # noqa: BLE001 - the send is best effort: the work is in the database for the sweep
        logger.exception("could not send %s%r: the sweep will send it again", task.name, args)


def collect_on_commit(key: Any, item: Any, flush: Any, using: str | None = None) -> None:
    """Gather ``item`` under ``key`` and call ``flush(items)`` once, after the current transaction commits.

    Every item added under ``key`` in one transaction (an ingest batch) reaches one call of ``flush`` with the
    items in the order first added, without repeats (e.g. one classification task for all the candidates that
    got points in the batch). Items added after the registering savepoint rolled back start a new collection;
    items of a rolled-back savepoint that did not register it stay in the collection (the work they cause must
    be idempotent). Outside a transaction, ``flush([item])`` runs at once.

    This is the one place that reads Django's list of pending commit callbacks (``connection.run_on_commit``,
    whose entries are ``(savepoint ids, callback, robust)``): it holds exactly the callbacks that will still
    run at this transaction's commit.
    """
    from django.db import transaction

    connection = transaction.get_connection(using)
    if not connection.in_atomic_block:
        transaction.on_commit(lambda: flush([item]), using=using, robust=True)
        return
    registered = {id(entry[1]) for entry in connection.run_on_commit}
    pending: dict[Any, tuple[Any, dict]] = getattr(connection, _COLLECTED_ATTR, {})
    pending = {k: entry for k, entry in pending.items() if id(entry[0]) in registered}
    setattr(connection, _COLLECTED_ATTR, pending)
    if key in pending:
        pending[key][1].setdefault(item, None)
        return
    items: dict = {item: None}

    def callback() -> None:
        flush(list(items))

    pending[key] = (callback, items)
    transaction.on_commit(callback, using=using, robust=True)


_COLLECTED_ATTR = "_tom_mma_collected_sends"


def drain(timeout: float | None = None) -> bool:
    """Wait for the background thread's tasks sent so far; True if all finished within ``timeout`` seconds."""
    with _lock:
        pending = set(_futures)
    done, not_done = wait(pending, timeout=timeout)
    return not not_done


# the router the cached queues were read from (Celery's own, ``app.amqp.router``), and the queues by task
_routed: tuple[Any, dict[tuple[str, str | None, str], str]] = (None, {})


def _queue_of(task: Any) -> str:
    """The name of the Celery queue ``task`` is routed to, as its ``delay`` would route it.

    The TOM's ``task_routes``, else the task's own ``queue``, else the default queue. Read once per task
    and router: Celery keeps its router (``app.amqp.router``) until it is replaced, and routes by it; a new
    router (new routes) reads them again.
    """
    global _routed
    default = task.app.conf.task_default_queue or "celery"
    own = getattr(task, "queue", None) or None  # @shared_task(queue=...)
    try:
        router = task.app.amqp.router
        if _routed[0] is not router:
            _routed = (router, {})
        queues, key = _routed[1], (task.name, own, default)
        if key not in queues:
            queue = router.route({"queue": own} if own else {}, task.name, (), {}).get("queue")
            queues[key] = str(getattr(queue, "name", None) or queue or default)
        return queues[key]
    except Exception:  # noqa: BLE001 - a route that cannot be read: the default queue, as a worker would
        logger.warning("could not read the Celery route of %s; using queue %s", task.name, default, exc_info=True)
        return default


def _background(queue: str) -> ThreadPoolExecutor:
    with _lock:
        executor = _executors.get(queue)
        if executor is None:
            executor = _executors[queue] = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix=f"tom-mma-eager-{queue}"
            )
        return executor


def _forget(future: Future) -> None:
    with _lock:
        _futures.discard(future)


def _apply(task: Any, args: tuple) -> None:
    result = task.apply(args=args)
    if result.failed():
        logger.error("%s%r failed: %s", task.name, args, result.result, exc_info=result.result)


def _run_eager(task: Any, args: tuple) -> None:
    from django.db import close_old_connections, connection

    close_old_connections()
    try:
        _apply(task, args)
    finally:
        connection.close()  # this thread's own connection: not left open between tasks
