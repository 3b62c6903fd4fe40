"""``TOPIC_HANDLERS`` of tom_mma_broker: ``handler(alert, metadata)``, thin over the services."""

from __future__ import annotations

import logging
from typing import Any

from tom_mma import deferred
from tom_mma.hopmessages import json_payload, message_id, metadata_headers

from .candidates import ingest_point
from .schemas.photometry import PhotometryMessage

__all__ = ["photometry_handler", "queue_classification"]

logger = logging.getLogger(__name__)


def photometry_handler(alert: Any, metadata: Any) -> None:
    """Store a photometry message (schema ``tom-mma/photometry/v1``) and queue its candidate's classification.

    The classification is queued once per candidate and ingest transaction (see
    :func:`queue_classification`): the points of one candidate that arrive in one batch are scored together.

    Raises ``ValueError`` for a message that is not a valid v1 point (the stream quarantines it).
    """
    point = PhotometryMessage.from_dict(json_payload(alert, "photometry"))
    candidate, created = ingest_point(point, message_id(metadata_headers(metadata)))
    if created:
        queue_classification(candidate.pk)


def queue_classification(candidate_pk: int, using: str | None = None) -> None:
    """Queue the classification of a candidate once per transaction, after it commits.

    The points of one candidate that arrive in one ingest batch are scored together
    (:func:`tom_mma.deferred.send_once_on_commit`). The send is robust: a failure (Redis down) is logged,
    never raised into the stream after its commit; the sweep (:func:`tom_mma_broker.tasks.sweep`) finds
    the candidate later.

    Parameters
    ----------
    candidate_pk : int
        Primary key of the :class:`~tom_mma_broker.models.Candidate`.
    using : str, optional
        Database alias (default: the default database).
    """
    from .tasks import classify_candidate

    deferred.send_once_on_commit(("classify", candidate_pk), classify_candidate, candidate_pk, using=using)
