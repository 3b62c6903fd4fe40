"""``TOPIC_HANDLERS`` of tom_mma_broker: ``handler(alert, metadata)``, thin over the services."""

from __future__ import annotations

import logging
from typing import Any

from tom_mma.hopmessages import json_payload, message_id, metadata_headers

from . import batchwork
from .candidates import ingest_point, ingest_points
from .schemas.photometry import PhotometryMessage

__all__ = ["photometry_handler"]

logger = logging.getLogger(__name__)


def photometry_handler(alert: Any, metadata: Any) -> None:
    """Store a photometry message (schema ``tom-mma/photometry/v1``) and queue its candidate's classification.

    In a stream's batch the message is checked here and its point stored with the batch's other points at
    the batch's end (:mod:`tom_mma_broker.batchwork`: one look-up of the batch's candidates by name, one
    insert per candidate, in the batch's transaction); called alone, at once. The classification is queued
    once per candidate and ingest transaction (the ``candidate_points_added`` signal,
    :mod:`tom_mma_broker.receivers`): the points of one candidate that arrive in one batch are scored
    together.

    Raises :class:`~tom_mma.schemas.fields.MessageError` (a permanent ``ValueError``) for a message that is not a
    valid v1 point: the stream quarantines it at once, and nothing of it is stored.
    """
    point = PhotometryMessage.from_dict(json_payload(alert, "photometry"))
    mid = message_id(metadata_headers(metadata))
    if batchwork.in_batch():
        pending = batchwork.batch_state("tom_mma_broker.photometry", list)
        pending.append((point, mid))
        batchwork.at_batch_end("tom_mma_broker.photometry", lambda: _store_batch(pending))
        return
    ingest_point(point, mid)


#: in a batch, the handler writes nothing itself (its points are stored at the batch's end): the ingest path
#: runs it without a savepoint of its own
photometry_handler.defers_writes = True  # type: ignore[attr-defined]


def _store_batch(pending: list[tuple[PhotometryMessage, Any]]) -> None:
    ingest_points([p for p, _ in pending], message_ids=[m for _, m in pending])
