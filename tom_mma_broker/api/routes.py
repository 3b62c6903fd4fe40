"""The broker's endpoints on the TOM's shared API router (``/api/mma-broker/...``)."""

from __future__ import annotations

__all__ = ["register"]


def register() -> None:
    """Register the viewsets on ``tom_common.api_router.SharedAPIRootRouter`` (once; ``ready()`` calls it)."""
    from tom_mma.api.base import register_routes

    from . import views

    register_routes("tom_mma_broker", [
        ("mma-broker/archive", views.ArchiveViewSet, "mma-broker-archive"),
        ("mma-broker/quarantine", views.QuarantineViewSet, "mma-broker-quarantine"),
        ("mma-broker/candidates", views.CandidateViewSet, "mma-broker-candidate"),
        ("mma-broker/classifications", views.ClassificationViewSet, "mma-broker-classification"),
    ])  # fmt: skip
