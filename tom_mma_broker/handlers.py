"""``TOPIC_HANDLERS`` of tom_mma_broker: ``handler(alert, metadata)``, thin over the services."""

from __future__ import annotations

import logging
from typing import Any

from tom_mma.hopmessages import json_payload, message_id, metadata_headers

from .candidates import ingest_point
from .schemas.photometry import PhotometryMessage

__all__ = ["photometry_handler"]

logger = logging.getLogger(__name__)


def photometry_handler(alert: Any, metadata: Any) -> None:
    """Store a photometry message (schema ``tom-mma/photometry/v1``) and queue its candidate's classification.

    The classification is queued once per candidate and ingest transaction (the ``candidate_points_added``
    signal, :mod:`tom_mma_broker.receivers`): the points of one candidate that arrive in one batch are scored
    together.

    Raises :class:`~tom_mma.schemas.fields.MessageError` (a permanent ``ValueError``) for a message that is not a
    valid v1 point: the stream quarantines it at once.
    """
    ingest_point(PhotometryMessage.from_dict(json_payload(alert, "photometry")), message_id(metadata_headers(metadata)))
