"""tom_mma_broker listens to tom_mma's documented signals (the two apps otherwise talk over Kafka).

Every derived alert that cited a retracted GW event is followed by a retraction message, whenever the event
is or becomes retracted: when its retraction is stored (``gw_event_retracted``, also for an event this TOM
never saw live: the alert may have cited it from elsewhere), and again whenever a later notice of the
retracted event is stored (``gw_notice_received``: e.g. the preliminary notice that arrives after a
retraction that came first). Queueing is idempotent (one retraction per derived alert), so calling it again
queues nothing twice.

The new photometry of an optical alert (``optical_photometry_added``) goes to the broker's candidates as
``tom-mma/photometry/v1`` points, with the GW event whose credible region and time window hold the candidate,
and the candidate's classification is queued (once per candidate), as a point from the photometry topic would be.
"""

from __future__ import annotations

from typing import Any

__all__ = ["connect", "on_gw_event_retracted", "on_gw_notice_received", "on_optical_photometry_added"]


def _follow_with_retractions(event: Any) -> None:
    from .publishing import queue_retractions

    queue_retractions(event.superevent_id, f"GW event {event.superevent_id} was retracted by LVK")


def on_gw_event_retracted(sender: Any, event: Any, **kwargs: Any) -> None:
    """A GW event became retracted (``never_live`` or not): queue the retraction of every derived alert citing it."""
    _follow_with_retractions(event)


def on_gw_notice_received(sender: Any, notice: Any, event: Any, **kwargs: Any) -> None:
    """A new notice of an event that is retracted: queue the retractions not queued yet (idempotent)."""
    if event.is_active:
        return
    _follow_with_retractions(event)


def on_optical_photometry_added(sender: Any, target: Any, points: list[dict], **kwargs: Any) -> None:
    """New optical photometry of a Target: store it under the broker's candidate and queue its classification."""
    from django.db import transaction

    from .candidates import ingest_point
    from .handlers import queue_classification
    from .schemas.photometry import PhotometryPoint

    with transaction.atomic():
        queued: set[int] = set()
        for fields in points:
            point = PhotometryPoint.create(**fields)
            candidate, created = ingest_point(point)
            if created and candidate.pk not in queued:
                queued.add(candidate.pk)
                queue_classification(candidate.pk)


def connect() -> None:
    """Connect the receivers (idempotent)."""
    from tom_mma.signals import gw_event_retracted, gw_notice_received, optical_photometry_added

    gw_event_retracted.connect(on_gw_event_retracted, dispatch_uid="tom_mma_broker.retractions")
    gw_notice_received.connect(on_gw_notice_received, dispatch_uid="tom_mma_broker.retracted_notices")
    optical_photometry_added.connect(on_optical_photometry_added, dispatch_uid="tom_mma_broker.optical_photometry")
