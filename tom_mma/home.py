"""What the MMA home page shows: what is happening at a glance.

Active GW events with their most probable candidates, recent derived alerts, GRB and neutrino events, the
observation requests waiting, and the panels other apps contribute (``mma_home_panels()`` on their AppConfig,
as tomtoolkit's ``target_detail_tabs()``: ``tom_mma_broker`` gives the streams' health). Everything a viewer
sees of a Target goes through the TOM's Target permissions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.apps import apps
from django.utils.module_loading import import_string
from tom_targets.models import Target
from tom_targets.permissions import targets_for_user

from .derived import ScoreRow, gw_event_urls
from .display import RequestStatus, status_of
from .gw.ranking import candidates as ranked_candidates
from .models import DerivedAlertRecord, EventCandidate, EventObservation, GWEvent, ObservationTrigger, TransientEvent

__all__ = ["EventSummary", "HomePage", "WaitingRequest", "home_page", "home_panels"]

_EVENTS_SHOWN = 10
_CANDIDATES_PER_EVENT = 3
_ALERTS_SHOWN = 10
_TRANSIENTS_SHOWN = 10
_REQUESTS_SHOWN = 20


@dataclass(frozen=True)
class EventSummary:
    """An active GW event and its most probable candidates (those the viewer may see, in its 90% region)."""

    event: GWEvent
    #: the most probable ones inside the 90% credible region
    candidates: list[EventCandidate]
    #: all inside the 90% region
    inside_90: int


@dataclass(frozen=True)
class WaitingRequest:
    """An observation request not finished: the target, where it was asked, and its one status."""

    target: Any
    facility: str
    observation_id: str
    record_pk: int | None
    status: RequestStatus
    reason: str


@dataclass(frozen=True)
class HomePage:
    """The home page's content."""

    events: list[EventSummary]
    alerts: list[ScoreRow]
    transients: list[TransientEvent]
    requests: list[WaitingRequest]
    panels: list[dict] = field(default_factory=list)

    @property
    def quiet(self) -> bool:
        """Nothing at all to show yet (a new TOM)."""
        return not (self.events or self.alerts or self.transients or self.requests)


def _events(visible) -> list[EventSummary]:
    events = (
        GWEvent.objects.filter(state=GWEvent.State.ACTIVE)
        .select_related("skymap")
        .defer("skymap__fits")
        .order_by("-latest_notice_at", "-id")[:_EVENTS_SHOWN]
    )
    summaries = []
    for event in events:
        ranked = ranked_candidates(event).filter(target__in=visible.values("pk"), credible_level__lte=0.9)
        summaries.append(EventSummary(event, list(ranked[:_CANDIDATES_PER_EVENT]), ranked.count()))
    return summaries


def _requests(visible) -> list[WaitingRequest]:
    waiting = []
    triggers = (
        ObservationTrigger.objects.filter(target__in=visible.values("pk"))
        .select_related("target")
        .prefetch_related("observation_records__gw_event_links")
        .order_by("-created")[: _REQUESTS_SHOWN * 3]
    )
    seen_records = set()
    for trigger in triggers:
        records = list(trigger.observation_records.all())
        for record in records or [None]:
            status = status_of(record) if record is not None else status_of(trigger)
            if record is not None:
                seen_records.add(record.pk)
            if status.final:
                continue
            waiting.append(
                WaitingRequest(
                    trigger.target,
                    trigger.facility,
                    record.observation_id if record else "",
                    record.pk if record else None,
                    status,
                    trigger.rule,
                )  # fmt: skip
            )
    # requests a GW retraction is cancelling, or that a person must cancel, made outside the rules
    links = (
        EventObservation.objects.filter(
            status__in=[EventObservation.Status.CANCEL_PENDING, EventObservation.Status.FLAGGED],
            observation_record__target__in=visible.values("pk"),
        )
        .exclude(observation_record__in=seen_records)
        .select_related("observation_record__target", "event")
    )
    for link in links[:_REQUESTS_SHOWN]:
        record = link.observation_record
        waiting.append(WaitingRequest(record.target, record.facility, record.observation_id, record.pk,
                                      status_of(link), f"for {link.event.superevent_id}"))  # fmt: skip
    return waiting[:_REQUESTS_SHOWN]


def home_panels(context: Mapping[str, Any]) -> list[dict]:
    """Panels other apps add to the home page: ``{"partial": template, "context": dotted path}`` each.

    An app adds them with a ``mma_home_panels()`` method on its AppConfig returning such dicts; the context
    function is called with the page's context and returns the partial's.
    """
    panels = []
    for config in apps.get_app_configs():
        method = getattr(config, "mma_home_panels", None)
        if method is None:
            continue
        for panel in method() or ():
            extra = import_string(panel["context"])(context) if panel.get("context") else {}
            panels.append({"partial": panel["partial"], "context": extra})
    return panels


def home_page(user: Any, context: Mapping[str, Any] | None = None) -> HomePage:
    """Everything the MMA home page shows to ``user``."""
    visible = targets_for_user(user, Target.objects.all(), "view_target")
    alerts = (
        DerivedAlertRecord.objects.filter(kind=DerivedAlertRecord.Kind.CLASSIFICATION, target__in=visible.values("pk"))
        .select_related("target")
        .order_by("-received")[:_ALERTS_SHOWN]
    )
    urls = gw_event_urls({a.gw_event for a in alerts if a.gw_event})
    transients = TransientEvent.objects.filter(is_test=False).order_by("-trigger_time")[:_TRANSIENTS_SHOWN]
    return HomePage(
        events=_events(visible),
        alerts=[ScoreRow(a, urls.get(a.gw_event, "")) for a in alerts],
        transients=list(transients),
        requests=_requests(visible),
        panels=home_panels(context or {}),
    )
