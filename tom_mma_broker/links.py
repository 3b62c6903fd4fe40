"""Multi-messenger links (``tom_mma.linking``) published as derived alerts, through the outbox.

A link alert (schema ``tom-mma/link-alert/v1``) names both events, their times and positions, the time
difference and the sky-overlap figures. Its id derives from the link and its figures: a link published again
unchanged queues nothing; a rescored link (a new GW sky map) is a new alert.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import orjson

from .conf import broker_settings
from .models import OutboxMessage
from .outbox import announce

__all__ = ["link_alert", "queue_link_alert"]

logger = logging.getLogger(__name__)


def _describe(event: Any) -> dict[str, Any]:
    if hasattr(event, "superevent_id") and not hasattr(event, "source"):
        return {"kind": "gw", "id": event.superevent_id, "time": event.event_time.isoformat()}
    return {"kind": event.messenger, "source": event.source, "id": event.event_id, "name": event.name,
            "time": event.trigger_time.isoformat(), "ra": event.ra, "dec": event.dec,
            "error_radius": event.error_radius}  # fmt: skip


def link_alert(link: Any) -> dict[str, Any]:
    """The derived alert of an :class:`tom_mma.models.EventLink`."""
    first = link.gw_event if link.gw_event_id else link.first
    figures = f"{link.pk}:{link.basis}:{link.dt:.6f}:{link.score}:{link.overlap}"
    alert_id = uuid.uuid5(uuid.NAMESPACE_URL, f"tom-mma:link:{figures}")
    return {
        "schema": "tom-mma/link-alert/v1",
        "alert_id": str(alert_id),
        "kind": "link",
        "basis": link.basis,
        "dt_s": link.dt,
        "score": link.score,
        "overlap": link.overlap,
        "first": _describe(first),
        "second": _describe(link.second),
    }


def queue_link_alert(link: Any) -> bool:
    """Queue the derived alert of ``link`` and ask for publication; False when already queued or disabled."""
    topic = broker_settings.LINK_ALERT_TOPIC
    if not topic or not broker_settings.PUBLISH_ENABLED:
        return False
    alert = link_alert(link)
    alert_id = uuid.UUID(alert["alert_id"])
    _, created = OutboxMessage.objects.get_or_create(
        alert_id=alert_id, defaults={"topic": topic, "kind": "link", "payload": orjson.dumps(alert)}
    )
    if created:
        logger.info("queued the link alert %s: %s", alert_id, link)
        announce()  # the outbox's sender runs after the commit (or the sweep, if that send is lost)
    return created
