"""A topic handler's ``batch``: each message read alone, the run's messages handled at once.

The reliable stream's ingest (:mod:`tom_mma_broker.ingest`) hands a run of consecutive messages of one handler
to its ``batch`` attribute and expects one item per message: what the handler returns for it, or the exception
that message raised, having written nothing for it (the ingest quarantines that message, or handles it alone
under its retry rules). :func:`batch_of` builds such a ``batch`` from the two halves of a handler.

Examples
--------
>>> def parse(alert, metadata):
...     return int(alert)
>>> batch = batch_of(parse, lambda numbers: [n * 10 for n in numbers])
>>> [type(r).__name__ if isinstance(r, Exception) else r for r in batch([("1", None), ("x", None), ("3", None)])]
[10, 'ValueError', 30]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

__all__ = ["batch_of"]

T = TypeVar("T")


class _Failed:
    __slots__ = ("exc",)

    def __init__(self, exc: Exception):
        self.exc = exc


def batch_of(
    parse: Callable[[Any, Any], T], handle_all: Callable[[list[T]], Sequence[Any]]
) -> Callable[[Sequence[tuple[Any, Any]]], list[Any]]:
    """A ``batch`` that reads each message with ``parse`` and handles those it read with one ``handle_all`` call.

    Parameters
    ----------
    parse : callable
        ``parse(alert, metadata)``: the message checked and read, writing nothing; what it raises is returned
        as that message's item.
    handle_all : callable
        ``handle_all([parsed, ...])``: handles the messages read, at once; returns one item for each (a
        result, or an exception for a message it set aside having written nothing of it). What it raises is
        raised: the ingest then redoes the run one message at a time.

    Returns
    -------
    callable
        ``batch([(alert, metadata), ...])``: one item per message, in order.
    """

    def batch(messages: Sequence[tuple[Any, Any]]) -> list[Any]:
        parsed: list[Any] = []
        for alert, metadata in messages:
            try:
                parsed.append(parse(alert, metadata))
            except Exception as exc:  # noqa: BLE001 - the message's own failure, returned to the stream for it
                parsed.append(_Failed(exc))
        done = iter(handle_all([p for p in parsed if not isinstance(p, _Failed)]))
        return [p.exc if isinstance(p, _Failed) else next(done) for p in parsed]

    return batch
