"""``tom_mma``'s endpoints on the TOM's shared API router (``/api/mma/...``)."""

from __future__ import annotations

__all__ = ["register"]


def register() -> None:
    """Register the viewsets on ``tom_common.api_router.SharedAPIRootRouter`` (once; ``ready()`` calls it)."""
    from . import views
    from .base import OpenAPISchemaViewSet, register_routes

    register_routes("tom_mma", [
        ("mma/gw-events", views.GWEventViewSet, "mma-gw-event"),
        ("mma/gw-notices", views.NoticeViewSet, "mma-gw-notice"),
        ("mma/gw-candidates", views.EventCandidateViewSet, "mma-gw-candidate"),
        ("mma/derived-alerts", views.DerivedAlertViewSet, "mma-derived-alert"),
        ("mma/triggers", views.ObservationTriggerViewSet, "mma-trigger"),
        ("mma/transients", views.TransientEventViewSet, "mma-transient"),
        ("mma/links", views.EventLinkViewSet, "mma-link"),
        ("mma/schema", OpenAPISchemaViewSet, "mma-schema"),
    ])  # fmt: skip
