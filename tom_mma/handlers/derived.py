"""``TOPIC_HANDLERS`` handler of the results topic: derived alerts (schema ``tom-mma/derived-alert/v1``).

In the TOM's ``ALERT_STREAMS``::

    "TOPIC_HANDLERS": {"tom-mma.derived": "tom_mma.handlers.derived.derived_alert_handler"}

The handler parses, then calls one service (:func:`tom_mma.derived.ingest_derived_alert`). Bad input
raises :class:`~tom_mma.schemas.fields.MessageError` (a permanent ``ValueError``) with the reason; the stream
quarantines such a message at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tom_mma.derived import DerivedAlertResult, ingest_derived_alert
from tom_mma.hopmessages import json_payload, message_id, metadata_headers
from tom_mma.schemas.derived_alert import DerivedAlert

__all__ = ["derived_alert_handler", "delivery_info"]


def delivery_info(metadata: Any) -> dict[str, Any]:
    """Where a message came from (hop ``Metadata`` or a dict): topic, partition, offset, timestamp, hop ``_id``."""
    if metadata is None:
        return {}
    if isinstance(metadata, Mapping):
        return {k: metadata[k] for k in ("topic", "partition", "offset", "timestamp", "message_id") if k in metadata}
    info = {k: getattr(metadata, k, None) for k in ("topic", "partition", "offset", "timestamp")}
    found = message_id(metadata_headers(metadata))
    info["message_id"] = str(found) if found is not None else None
    return {k: v for k, v in info.items() if v is not None}


def derived_alert_handler(alert: Any, metadata: Any = None) -> DerivedAlertResult:
    """Ingest one derived alert from the results topic.

    Raises
    ------
    ValueError
        If the message is not a valid v1 derived alert (the reason is in the message).
    """
    return ingest_derived_alert(DerivedAlert.from_dict(json_payload(alert, "derived alert")), delivery_info(metadata))
