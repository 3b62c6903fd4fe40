"""``TOPIC_HANDLERS`` handler of the results topic: derived alerts (schema ``tom-mma/derived-alert/v1``).

In the TOM's ``ALERT_STREAMS``::

    "TOPIC_HANDLERS": {"tom-mma.derived": "tom_mma.handlers.derived.derived_alert_handler"}

The handler parses, then calls one service (:func:`tom_mma.derived.ingest_derived_alert`). Bad input
raises ``ValueError`` with the reason; the stream retries and quarantines such a message.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

from tom_mma.derived import IngestResult, ingest_derived_alert
from tom_mma.schemas.derived_alert import DerivedAlert

__all__ = ["derived_alert_handler", "alert_payload", "delivery_info"]


def alert_payload(alert: Any) -> Any:
    """The JSON value of a message: a hop ``JSONBlob``/``Blob`` (``.content``), a dict, or raw bytes/text.

    Raises
    ------
    ValueError
        If the message is not JSON.
    """
    content = getattr(alert, "content", alert)
    if isinstance(content, Mapping):
        return content
    if isinstance(content, bytes | bytearray | str):
        try:
            return json.loads(content)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"derived alert: the message is not JSON ({exc})")
    raise ValueError(f"derived alert: cannot read a message of type {type(content).__name__}")


def _header_id(headers: Any) -> str | None:
    for key, value in headers or ():
        if key == "_id" and value:
            if isinstance(value, bytes) and len(value) == 16:
                return str(uuid.UUID(bytes=value))
            return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    return None


def delivery_info(metadata: Any) -> dict[str, Any]:
    """Where a message came from (hop ``Metadata`` or a dict): topic, partition, offset, timestamp, hop ``_id``."""
    if metadata is None:
        return {}
    if isinstance(metadata, Mapping):
        return {k: metadata[k] for k in ("topic", "partition", "offset", "timestamp", "message_id") if k in metadata}
    info = {k: getattr(metadata, k, None) for k in ("topic", "partition", "offset", "timestamp")}
    info["message_id"] = _header_id(getattr(metadata, "headers", None))
    return {k: v for k, v in info.items() if v is not None}


def derived_alert_handler(alert: Any, metadata: Any = None) -> IngestResult:
    """Ingest one derived alert from the results topic.

    Raises
    ------
    ValueError
        If the message is not a valid v1 derived alert (the reason is in the message).
    """
    return ingest_derived_alert(DerivedAlert.from_dict(alert_payload(alert)), delivery_info(metadata))
