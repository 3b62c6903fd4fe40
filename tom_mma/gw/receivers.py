"""Signal receivers of the GW layer: rank a Target against the active events when it is saved; evaluate the
observation rules again when an event's sky map changes (:func:`tom_mma.rules.on_skymap_updated`).

Connected by :func:`connect`, which ``TomMmaConfig.ready()`` calls (idempotent: ``dispatch_uid``). The receiver
does no work in the caller's transaction: it queues :func:`tom_mma.gw.tasks.rank_targets_task` on commit.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models.signals import post_save

__all__ = ["connect", "target_saved"]

_UID = "tom_mma.gw.receivers.target_saved"


def target_saved(sender, instance, created: bool = False, update_fields=None, **kwargs) -> None:
    """Queue ranking of a saved Target (with a position) against every active event, after commit."""
    from tom_targets.base_models import BaseTarget

    if not isinstance(instance, BaseTarget) or instance.ra is None or instance.dec is None:
        return
    if not created and update_fields is not None and not {"ra", "dec"} & set(update_fields):
        return  # saved without touching its position: its ranks still hold
    pk = instance.pk

    def _queue() -> None:
        from .tasks import rank_targets_task

        rank_targets_task.delay([pk])

    transaction.on_commit(_queue, robust=True)


def connect() -> None:
    """Connect the receivers (call from ``AppConfig.ready()``; calling it again does nothing)."""
    from tom_targets.models import Target  # the TOM's target model (settings.TARGET_MODEL_CLASS)

    post_save.connect(target_saved, sender=Target, dispatch_uid=_UID)
    # a new sky map may put candidates that waited for it inside the region: evaluate the rules again
    from tom_mma.rules import on_skymap_updated
    from tom_mma.signals import gw_skymap_updated

    gw_skymap_updated.connect(on_skymap_updated, dispatch_uid="tom_mma.rules.on_skymap_updated")
