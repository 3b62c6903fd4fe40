"""``TOPIC_HANDLERS`` of tom_mma_broker: ``handler(alert, metadata)``, thin over the services."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from django.db import transaction

from .candidates import ingest_point
from .formats import header_value
from .schemas.photometry import PhotometryPoint

__all__ = ["photometry_handler"]

logger = logging.getLogger(__name__)


def _content(alert: Any) -> Any:
    content = getattr(alert, "content", alert)
    if isinstance(content, bytes | bytearray):
        content = json.loads(content)
    return content


def _message_id(metadata: Any) -> uuid.UUID | None:
    value = header_value(getattr(metadata, "headers", None), "_id")
    if value is None:
        return None
    return uuid.UUID(bytes=value) if len(value) == 16 else uuid.UUID(value.decode())


def photometry_handler(alert: Any, metadata: Any) -> None:
    """Store a photometry message (schema ``tom-mma/photometry/v1``) and queue its candidate's classification.

    Raises ``ValueError`` for a message that is not a valid v1 point (the stream quarantines it).
    """
    point = PhotometryPoint.from_dict(_content(alert))
    candidate, created = ingest_point(point, _message_id(metadata))
    if created:
        from .tasks import classify_candidate

        pk = candidate.pk
        # robust: a failed enqueue (Redis down) is logged, never raised into the stream after its commit;
        # the sweep task picks the candidate up later
        transaction.on_commit(lambda: classify_candidate.delay(pk), robust=True)
