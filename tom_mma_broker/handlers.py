"""``TOPIC_HANDLERS`` of tom_mma_broker: ``handler(alert, metadata)``, thin over the services."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.db import transaction

from tom_mma import deferred
from tom_mma.hopmessages import json_payload, message_id, metadata_headers

from .candidates import ingest_point
from .schemas.photometry import PhotometryPoint

__all__ = ["photometry_handler", "queue_classification"]

logger = logging.getLogger(__name__)


def photometry_handler(alert: Any, metadata: Any) -> None:
    """Store a photometry message (schema ``tom-mma/photometry/v1``) and queue its candidate's classification.

    The classification is queued once per candidate and ingest transaction (see
    :func:`queue_classification`): the points of one candidate that arrive in one batch are scored together.

    Raises ``ValueError`` for a message that is not a valid v1 point (the stream quarantines it).
    """
    point = PhotometryPoint.from_dict(json_payload(alert, "photometry"))
    candidate, created = ingest_point(point, message_id(metadata_headers(metadata)))
    if created:
        queue_classification(candidate.pk)


_PENDING_ATTR = "_tom_mma_pending_classifications"


def _enqueue_after_commit(candidate_pk: int) -> Callable[[], None]:
    def enqueue_classification() -> None:
        from .tasks import classify_candidate

        deferred.send(classify_candidate, candidate_pk)

    return enqueue_classification


def queue_classification(candidate_pk: int, using: str | None = None) -> None:
    """Queue the classification of a candidate once, after the current transaction commits.

    Within one transaction (the stream's ingest batch), the first call for a candidate registers an
    ``on_commit`` callback; later calls for the same candidate find it still registered and add
    nothing. A callback dropped with a rolled-back savepoint (a quarantined message) is registered
    again by the next point of that candidate. Outside a transaction the task is queued at once.

    The enqueue is robust: a failure (Redis down) is logged, never raised into the stream after its
    commit; the sweep task (:func:`tom_mma_broker.tasks.sweep`) picks the candidate up later.

    Parameters
    ----------
    candidate_pk : int
        Primary key of the :class:`~tom_mma_broker.models.Candidate`.
    using : str, optional
        Database alias (default: the default database).
    """
    connection = transaction.get_connection(using)
    callback = _enqueue_after_commit(candidate_pk)
    if not connection.in_atomic_block:
        transaction.on_commit(callback, using=using, robust=True)
        return
    # run_on_commit (Django's list of (savepoint ids, callback, robust)) holds exactly the callbacks that will
    # still run at this transaction's commit: Django drops a rolled-back savepoint's entries from it
    registered = {id(entry[1]) for entry in connection.run_on_commit}
    pending: dict[int, Callable[[], None]] = getattr(connection, _PENDING_ATTR, {})
    # forget the callbacks of earlier transactions (run, or dropped with a rollback)
    pending = {pk: cb for pk, cb in pending.items() if id(cb) in registered}
    setattr(connection, _PENDING_ATTR, pending)
    if candidate_pk in pending:
        return
    pending[candidate_pk] = callback
    transaction.on_commit(callback, using=using, robust=True)
