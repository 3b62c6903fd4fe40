"""Signal receivers of tom_mma_broker: tom_mma's documented signals, and its own that become tasks.

The two apps talk over Kafka topics, and the broker learns of GW retractions through tom_mma's signals (and
asks about an event only through :func:`tom_mma.gw.events.is_retracted`).

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

__all__ = [
    "connect",
    "on_events_linked",
    "on_gw_event_retracted",
    "on_gw_notice_received",
    "on_optical_photometry_added",
    "on_outbox_queued",
]


def _follow_with_retractions(event: Any) -> None:
    from .outbox import queue_retractions

    queue_retractions(event.superevent_id, f"GW event {event.superevent_id} was retracted by LVK")


def on_gw_event_retracted(sender: Any, event: Any, **kwargs: Any) -> None:
    """A GW event became retracted (``never_live`` or not): queue the retraction of every derived alert citing it."""
    _follow_with_retractions(event)


def on_gw_notice_received(sender: Any, notice: Any, event: Any, **kwargs: Any) -> None:
    """A new notice of an event that is retracted: queue the retractions not queued yet (idempotent)."""
    if event.is_active:
        return
    _follow_with_retractions(event)


def on_outbox_queued(sender: Any, **kwargs: Any) -> None:
    """New derived alerts wait in the outbox: run the sender in a task."""
    from tom_mma import deferred

    from .tasks import publish_outbox

    deferred.send(publish_outbox)


def on_candidate_points_added(sender: Any, candidate_pk: int, **kwargs: Any) -> None:
    """New points of a candidate (inside the ingest transaction): classify it once, after the commit.

    The points of one candidate that arrive in one batch are scored together, and the candidates of one
    batch in one task (:func:`tom_mma.deferred.collect_on_commit`): ``classify_candidate`` for a single
    candidate, ``classify_candidates`` for several. A send that fails (Redis down) is logged, and the sweep
    (:func:`tom_mma_broker.tasks.sweep`) finds the candidates later.
    """
    from tom_mma import deferred

    deferred.collect_on_commit("tom_mma_broker.classify", candidate_pk, _send_classification)


def _send_classification(candidate_pks: list[int]) -> None:
    from tom_mma import deferred

    from .tasks import classify_candidate, classify_candidates

    if len(candidate_pks) == 1:
        deferred.send(classify_candidate, candidate_pks[0])
    else:
        deferred.send(classify_candidates, candidate_pks)


def on_events_linked(sender: Any, link: Any, created: bool, **kwargs: Any) -> None:
    """A multi-messenger link was made or rescored: publish it as a derived alert (:mod:`.links`)."""
    from .links import queue_link_alert

    queue_link_alert(link)


def on_optical_photometry_added(sender: Any, target: Any, points: list[dict], **kwargs: Any) -> None:
    """New optical photometry of a Target: store it under the broker's candidate (classified once, on commit)."""
    from django.db import transaction

    from .candidates import ingest_points
    from .schemas.photometry import PhotometryMessage

    with transaction.atomic():
        ingest_points([PhotometryMessage.create(**fields) for fields in points])  # sends candidate_points_added


def connect() -> None:
    """Connect the receivers (idempotent)."""
    from tom_mma.signals import events_linked, gw_event_retracted, gw_notice_received, optical_photometry_added

    from .signals import candidate_points_added, outbox_queued

    outbox_queued.connect(on_outbox_queued, dispatch_uid="tom_mma_broker.outbox_queued")
    candidate_points_added.connect(on_candidate_points_added, dispatch_uid="tom_mma_broker.classify")

    events_linked.connect(on_events_linked, dispatch_uid="tom_mma_broker.links")
    gw_event_retracted.connect(on_gw_event_retracted, dispatch_uid="tom_mma_broker.retractions")
    gw_notice_received.connect(on_gw_notice_received, dispatch_uid="tom_mma_broker.retracted_notices")
    optical_photometry_added.connect(on_optical_photometry_added, dispatch_uid="tom_mma_broker.optical_photometry")
