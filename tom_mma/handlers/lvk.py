"""``TOPIC_HANDLERS`` handlers of LVK gravitational-wave notices, one per transport.

In the TOM's ``ALERT_STREAMS``::

    "TOPIC_HANDLERS": {
        "igwn.gwalert": "tom_mma.handlers.lvk.igwn_gwalert_handler",                  # Hopskotch, Avro
        "gcn.notices.igwn.gwalert": "tom_mma.handlers.lvk.gcn_igwn_gwalert_handler",  # GCN Kafka, JSON
    }

The two topics live on different brokers (kafka.scimma.org and kafka.gcn.nasa.gov), so each goes in its own
``ALERT_STREAMS`` entry with its own credentials (see ``docs/gw.md``).

Each handler parses the message into a frozen :class:`tom_mma.gw.notices.GWNotice` and calls one service,
:func:`tom_mma.gw.events.ingest_notice`. Bad input (schema, corrupt or cut sky map, cut base64, unknown alert
type) raises :class:`tom_mma.gw.notices.NoticeError` with the reason, before anything is stored; the
reliable stream retries and quarantines such a message. A notice seen before (redelivered, or already taken
from the other transport) changes nothing.
"""

from __future__ import annotations

import logging
from typing import Any

from tom_mma.gw.events import NoticeResult, ingest_notice
from tom_mma.gw.notices import notice_from_message

__all__ = ["gcn_igwn_gwalert_handler", "igwn_gwalert_handler"]

logger = logging.getLogger(__name__)


def _where(alert: Any, metadata: Any) -> str:
    """topic[partition]@offset of a message, from hop's metadata or a confluent-kafka ``Message`` itself."""
    if metadata is not None:
        parts = [getattr(metadata, name, "?") for name in ("topic", "partition", "offset")]
    elif callable(getattr(alert, "topic", None)):  # GCNClassicAlertStream passes the Message alone
        parts = [getattr(alert, name)() for name in ("topic", "partition", "offset")]
    else:
        return "-"
    topic, partition, offset = parts
    return f"{topic}[{partition}]@{offset}"


def igwn_gwalert_handler(alert: Any, metadata: Any = None) -> NoticeResult:
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
    logger.info("%s: %s notice from %s", notice.superevent_id, notice.alert_type, _where(alert, metadata))
    return ingest_notice(notice)


def gcn_igwn_gwalert_handler(alert: Any, metadata: Any = None) -> NoticeResult:
    """Handle a JSON LVK notice from GCN Kafka ``gcn.notices.igwn.gwalert`` (sky maps base64-encoded).

    Parameters
    ----------
    alert : confluent_kafka.Message or hop.models.JSONBlob or hop.models.Blob or dict or bytes
        The JSON document, decoded or not. tom-alertstreams' ``GCNClassicAlertStream`` calls the handler with
        the raw ``confluent_kafka.Message`` alone (payload in ``.value()``); a hop stream passes a model and
        its metadata.
    metadata : hop.io.Metadata, optional
        Used for logging only (taken from the ``Message`` when not given).

    Raises
    ------
    tom_mma.gw.notices.NoticeError
        With the reason the notice cannot be taken.
    """
    notice = notice_from_message(alert, "json")
    logger.info("%s: %s notice from %s", notice.superevent_id, notice.alert_type, _where(alert, metadata))
    return ingest_notice(notice)
