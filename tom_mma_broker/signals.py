"""Documented signals of ``tom_mma_broker`` (sent after the transaction that caused them has committed).

Signals
-------
outbox_queued
    New derived alerts wait in the outbox (:mod:`tom_mma_broker.outbox`). ``sender``:
    :class:`tom_mma_broker.models.OutboxMessage`. The broker's receivers run the sender in a task.
"""

from django.dispatch import Signal

__all__ = ["outbox_queued"]

outbox_queued = Signal()
