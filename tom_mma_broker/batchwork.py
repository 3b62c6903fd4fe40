"""Work a handler defers to the end of its ingest batch, done once for the batch, in the batch's transaction.

The ingest path (:class:`tom_mma_broker.ingest.Ingestor`) runs each message's handler in a savepoint of the
batch transaction. A handler whose messages share state (the SNEWS decider's cache) keeps it in memory
during the batch and writes it once, set-based, at the end: it registers that write with
:func:`at_batch_end`. The ingestor runs the registered work after the batch's last handler and before its
commit; an error there rolls the whole batch back (the stream retries it, as for a database error). Outside
a batch (a handler called directly, re-handling one archived message), :func:`at_batch_end` returns False
and the caller does its work at once.

Examples
--------
>>> done = []
>>> with batch_scope():
...     at_batch_end("k", lambda: done.append(1)), at_batch_end("k", lambda: done.append(2))
...     finish_batch()
(True, True)
>>> done, at_batch_end("k", lambda: None)
([1], False)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["batch_scope", "at_batch_end", "batch_state", "finish_batch", "in_batch"]

_local = threading.local()


class _Scope:
    def __init__(self) -> None:
        self.work: dict[Hashable, Callable[[], Any]] = {}
        self.state: dict[Hashable, Any] = {}


def _scope() -> _Scope | None:
    stack = getattr(_local, "stack", None)
    return stack[-1] if stack else None


@contextmanager
def batch_scope() -> Iterator[None]:
    """The extent of one ingest batch (per thread; nested scopes are separate batches).

    Work registered and not finished when the scope ends (the batch failed) is dropped.
    """
    stack = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    stack.append(_Scope())
    try:
        yield
    finally:
        stack.pop()


def in_batch() -> bool:
    """Whether a batch is open in this thread."""
    return _scope() is not None


def at_batch_end(key: Hashable, work: Callable[[], Any]) -> bool:
    """Run ``work`` at the end of the current batch, once per ``key``; False when no batch is open.

    Parameters
    ----------
    key : hashable
        One piece of work per key and batch: a second registration under the same key is ignored.
    work : callable
        Called without arguments by :func:`finish_batch`, in the batch's transaction.
    """
    scope = _scope()
    if scope is None:
        return False
    scope.work.setdefault(key, work)
    return True


def batch_state(key: Hashable, factory: Callable[[], Any]) -> Any:
    """State kept for the current batch under ``key`` (made by ``factory`` on first use).

    Raises
    ------
    RuntimeError
        When no batch is open.
    """
    scope = _scope()
    if scope is None:
        raise RuntimeError("no ingest batch is open")
    if key not in scope.state:
        scope.state[key] = factory()
    return scope.state[key]


def finish_batch() -> None:
    """Run the current batch's deferred work, in the order it was registered, and forget it."""
    scope = _scope()
    if scope is None:
        return
    while scope.work:
        key = next(iter(scope.work))
        work = scope.work.pop(key)
        work()
    scope.state.clear()
