"""``TOPIC_HANDLERS`` of tom_mma_broker: ``handler(alert, metadata)``, thin over the services."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from tom_mma.batching import batch_of
from tom_mma.hopmessages import json_payload, message_id, metadata_headers

from .candidates import ingest_point, ingest_points
from .schemas.photometry import PhotometryMessage

__all__ = ["photometry_handler"]

logger = logging.getLogger(__name__)


def _read_point(alert: Any, metadata: Any) -> tuple[PhotometryMessage, uuid.UUID | None]:
    return PhotometryMessage.from_dict(json_payload(alert, "photometry")), message_id(metadata_headers(metadata))


def photometry_handler(alert: Any, metadata: Any) -> None:
    """Store a photometry message (schema ``tom-mma/photometry/v1``) and queue its candidate's classification.

    A run of the stream's messages goes to the handler's ``batch`` (:mod:`tom_mma_broker.ingest`): each
    message is checked alone, and their points are stored together (:func:`~tom_mma_broker.candidates.ingest_points`:
    one look-up of the run's candidates by name, one insert per candidate, in the batch's transaction). The
    classification is queued once per candidate and ingest transaction (the ``candidate_points_added``
    signal, :mod:`tom_mma_broker.receivers`): the points of one candidate that arrive in one batch are scored
    together.

    Raises :class:`~tom_mma.schemas.fields.MessageError` (a permanent ``ValueError``) for a message that is not a
    valid v1 point: the stream quarantines it at once, and nothing of it is stored.
    """
    ingest_point(*_read_point(alert, metadata))


def _store_points(points: list[tuple[PhotometryMessage, uuid.UUID | None]]) -> list[None]:
    ingest_points([p for p, _ in points], message_ids=[m for _, m in points])
    return [None] * len(points)


# the stream's ingest hands a run of consecutive messages to the handler's ``batch`` at once
photometry_handler.batch = batch_of(_read_point, _store_points)  # type: ignore[attr-defined]
