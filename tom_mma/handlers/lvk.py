"""``TOPIC_HANDLERS`` handlers of LVK gravitational-wave notices, one per transport.

In the TOM's ``ALERT_STREAMS``::

    "TOPIC_HANDLERS": {
        "igwn.gwalert": "tom_mma.handlers.lvk.igwn_gwalert_handler",                  # Hopskotch, Avro
        "gcn.notices.igwn.gwalert": "tom_mma.handlers.lvk.gcn_igwn_gwalert_handler",  # GCN Kafka, JSON
    }

Each handler parses the message into a frozen :class:`tom_mma.gw.notices.GWNotice` and calls one service,
:func:`tom_mma.gw.events.ingest_notice`. Bad input (schema, corrupt or cut sky map, cut base64, unknown alert
type) raises :class:`tom_mma.gw.notices.NoticeError` with the reason, before anything is stored; the
reliable stream retries and quarantines such a message. A notice seen before (redelivered, or already taken
from the other transport) changes nothing.
"""

from __future__ import annotations

import logging
from typing import Any

from tom_mma.gw.events import IngestResult, ingest_notice
from tom_mma.gw.notices import notice_from_message

__all__ = ["gcn_igwn_gwalert_handler", "igwn_gwalert_handler"]

logger = logging.getLogger(__name__)


def _where(metadata: Any) -> str:
    if metadata is None:
        return "-"
    return (
        f"{getattr(metadata, 'topic', '?')}[{getattr(metadata, 'partition', '?')}]@{getattr(metadata, 'offset', '?')}"
    )


def igwn_gwalert_handler(alert: Any, metadata: Any = None) -> IngestResult:
    """Handle an Avro LVK notice from Hopskotch ``igwn.gwalert``.

    Parameters
    ----------
    alert : hop.models.AvroBlob
        ``.content`` a dict (hop-client >= 0.11) or a list of one dict (before); a raw ``Blob`` of Avro
        container bytes is accepted too.
    metadata : hop.io.Metadata, optional
        Used for logging only.

    Raises
    ------
    tom_mma.gw.notices.NoticeError
        With the reason the notice cannot be taken.
    """
    notice = notice_from_message(alert, "avro")
    logger.info("%s: %s notice from %s", notice.superevent_id, notice.alert_type, _where(metadata))
    return ingest_notice(notice)


def gcn_igwn_gwalert_handler(alert: Any, metadata: Any = None) -> IngestResult:
    """Handle a JSON LVK notice from GCN Kafka ``gcn.notices.igwn.gwalert`` (sky maps base64-encoded).

    Parameters
    ----------
    alert : hop.models.JSONBlob or hop.models.Blob or dict or bytes
        The JSON document, decoded or not.
    metadata : hop.io.Metadata, optional
        Used for logging only.

    Raises
    ------
    tom_mma.gw.notices.NoticeError
        With the reason the notice cannot be taken.
    """
    notice = notice_from_message(alert, "json")
    logger.info("%s: %s notice from %s", notice.superevent_id, notice.alert_type, _where(metadata))
    return ingest_notice(notice)
