"""``TOPIC_HANDLERS`` handler of the results topic: derived alerts (schema ``tom-mma/derived-alert/v1``).

In the TOM's ``ALERT_STREAMS``::

    "TOPIC_HANDLERS": {"tom-mma.derived": "tom_mma.handlers.derived.derived_alert_handler"}

The handler parses, then calls one service (:func:`tom_mma.derived.ingest_derived_alerts`); the stream's ingest
hands it a run of consecutive messages at once (its ``batch``, as the optical handlers have). Bad input
raises :class:`~tom_mma.schemas.fields.MessageError` (a permanent ``ValueError``) with the reason; the stream
quarantines such a message at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tom_mma.batching import batch_of
from tom_mma.derived import DerivedAlertResult, ingest_derived_alert, ingest_derived_alerts
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
    return ingest_derived_alert(_parse(alert), delivery_info(metadata))


def _parse(alert: Any) -> DerivedAlert:
    return DerivedAlert.from_dict(json_payload(alert, "derived alert"))


def _read(alert: Any, metadata: Any) -> tuple[DerivedAlert, dict[str, Any]]:
    return _parse(alert), delivery_info(metadata)


# the stream's ingest hands a run of consecutive messages to a handler's ``batch`` at once (tom_mma_broker.ingest)
derived_alert_handler.batch = batch_of(_read, ingest_derived_alerts)  # type: ignore[attr-defined]
