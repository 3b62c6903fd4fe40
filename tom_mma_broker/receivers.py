"""tom_mma_broker listens to tom_mma's documented signals (the two apps otherwise talk over Kafka)."""

from __future__ import annotations

from typing import Any

__all__ = ["connect", "on_gw_event_retracted"]


def on_gw_event_retracted(sender: Any, event: Any, never_live: bool = False, **kwargs: Any) -> None:
    """A retracted GW event: every derived alert that cited it is followed by a retraction message."""
    if never_live:
        return
    from .publishing import queue_retractions

    queue_retractions(event.superevent_id, f"GW event {event.superevent_id} was retracted by LVK")


def connect() -> None:
    """Connect the receivers (idempotent)."""
    from tom_mma.signals import gw_event_retracted

    gw_event_retracted.connect(on_gw_event_retracted, dispatch_uid="tom_mma_broker.retractions")
