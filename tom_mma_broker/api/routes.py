"""The broker's endpoints on the TOM's shared API router (``/api/mma-broker/...``)."""

from __future__ import annotations

__all__ = ["register"]

_registered = False


def register() -> None:
    """Register the viewsets on ``tom_common.api_router.SharedAPIRootRouter`` (once; ``ready()`` calls it)."""
    global _registered
    if _registered:
        return
    _registered = True
    from tom_mma.api.base import shared_router

    from . import views

    router = shared_router()
    router.register("mma-broker/archive", views.ArchiveViewSet, "mma-broker-archive")
    router.register("mma-broker/quarantine", views.QuarantineViewSet, "mma-broker-quarantine")
    router.register("mma-broker/candidates", views.CandidateViewSet, "mma-broker-candidate")
    router.register("mma-broker/classifications", views.ClassificationViewSet, "mma-broker-classification")
