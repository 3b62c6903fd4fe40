"""``tom_mma``'s endpoints on the TOM's shared API router (``/api/mma/...``)."""

from __future__ import annotations

__all__ = ["register"]

_registered = False


def register() -> None:
    """Register the viewsets on ``tom_common.api_router.SharedAPIRootRouter`` (once; ``ready()`` calls it)."""
    global _registered
    if _registered:
        return
    _registered = True
    from . import views
    from .base import OpenAPISchemaViewSet, shared_router

    router = shared_router()
    router.register("mma/gw-events", views.GWEventViewSet, "mma-gw-event")
    router.register("mma/gw-notices", views.NoticeViewSet, "mma-gw-notice")
    router.register("mma/gw-candidates", views.EventCandidateViewSet, "mma-gw-candidate")
    router.register("mma/derived-alerts", views.DerivedAlertViewSet, "mma-derived-alert")
    router.register("mma/triggers", views.ObservationTriggerViewSet, "mma-trigger")
    router.register("mma/transients", views.TransientEventViewSet, "mma-transient")
    router.register("mma/links", views.EventLinkViewSet, "mma-link")
    router.register("mma/schema", OpenAPISchemaViewSet, "mma-schema")
