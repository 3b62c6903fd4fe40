"""Documented signals of ``tom_mma_broker`` (sent after the transaction that caused them has committed).

Signals
-------
outbox_queued
    New derived alerts wait in the outbox (:mod:`tom_mma_broker.outbox`). ``sender``:
    :class:`tom_mma_broker.models.OutboxMessage`. The broker's receivers run the sender in a task.
candidate_points_added
    New photometry of a candidate was stored. Sent **inside** the ingest transaction (a receiver defers its
    work to the commit: the broker's receiver queues the candidate's classification once per transaction).
    ``sender``: :class:`tom_mma_broker.models.Candidate`; keyword argument: ``candidate_pk``.
"""

from django.dispatch import Signal

__all__ = ["candidate_points_added", "outbox_queued"]

candidate_points_added = Signal()
outbox_queued = Signal()
