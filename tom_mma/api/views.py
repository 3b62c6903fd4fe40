"""Viewsets of ``tom_mma``'s API: thin, read-only, their querysets from :mod:`tom_mma.visibility`."""

from __future__ import annotations

from typing import Any

from django.db.models import Prefetch, QuerySet
from rest_framework.decorators import action
from rest_framework.response import Response

from tom_mma.models import (
    DerivedAlertRecord,
    EventCandidate,
    EventLink,
    EventNotice,
    GWEvent,
    ObservationTrigger,
    TransientEvent,
)
from tom_mma.visibility import rows_of_visible_targets

from . import filters, serializers
from .base import MmaReadOnlyViewSet

__all__ = [
    "DerivedAlertViewSet",
    "EventCandidateViewSet",
    "EventLinkViewSet",
    "GWEventViewSet",
    "NoticeViewSet",
    "ObservationTriggerViewSet",
    "TransientEventViewSet",
]


def _ranked(user: Any, queryset: QuerySet) -> QuerySet:
    rows = queryset.select_related("event", "target", "skymap").defer("skymap__fits")
    return rows_of_visible_targets(user, rows)


class GWEventViewSet(MmaReadOnlyViewSet):
    """GW superevents: the figures of the latest notice, retraction state, current sky map.

    On the detail, the notices, sky map versions and linked events; ``/candidates/``: the event's ranked
    candidates.
    """

    serializer_class = serializers.GWEventSerializer
    detail_serializer_class = serializers.GWEventDetailSerializer
    filterset_class = filters.GWEventFilter
    lookup_field = "superevent_id"
    ordering_fields = ("event_time", "latest_notice_at", "far")

    def get_queryset(self) -> QuerySet:
        events = GWEvent.objects.select_related("skymap").defer("skymap__fits")
        if self.action == "retrieve":
            events = events.prefetch_related(Prefetch("notices", EventNotice.objects.select_related("event", "skymap")
                                                      .defer("payload", "skymap__fits")))  # fmt: skip
        return events

    @action(detail=True, serializer_class=serializers.EventCandidateSerializer, filterset_class=None)
    def candidates(self, request: Any, superevent_id: str | None = None) -> Response:
        """The event's candidates the user may see, most probable first (credible level, then density)."""
        event = self.get_object()
        rows = _ranked(self.user, EventCandidate.objects.filter(event=event)).order_by(
            "credible_level", "-probdensity", "target_id"
        )
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)


class NoticeViewSet(MmaReadOnlyViewSet):
    """LVK notices: metadata in the list, the payload on the detail."""

    serializer_class = serializers.NoticeSerializer
    detail_serializer_class = serializers.NoticeDetailSerializer
    filterset_class = filters.NoticeFilter
    ordering_fields = ("time_created", "received")

    def get_queryset(self) -> QuerySet:
        notices = EventNotice.objects.select_related("event", "skymap").defer("skymap__fits")
        return notices if self.action == "retrieve" else notices.defer("payload")


class EventCandidateViewSet(MmaReadOnlyViewSet):
    """Sky-map rankings: where each Target the user may see falls in an event's current sky map."""

    serializer_class = serializers.EventCandidateSerializer
    filterset_class = filters.EventCandidateFilter
    ordering_fields = ("credible_level", "probdensity", "ranked_at")

    def get_queryset(self) -> QuerySet:
        return _ranked(self.user, EventCandidate.objects.all())


class DerivedAlertViewSet(MmaReadOnlyViewSet):
    """Derived alerts received: kilonova classifications (score, model version, features) and retractions.

    A Target's kilonova score history: ``?target=<id>&kind=classification&ordering=latest_point_mjd``.
    """

    serializer_class = serializers.DerivedAlertSerializer
    detail_serializer_class = serializers.DerivedAlertDetailSerializer
    filterset_class = filters.DerivedAlertFilter
    lookup_field = "alert_id"
    ordering_fields = ("received", "kilonova_score", "latest_point_mjd", "alert_created")

    def get_queryset(self) -> QuerySet:
        alerts = DerivedAlertRecord.objects.all()
        if self.action != "retrieve":
            alerts = alerts.defer("raw", "delivery")
        return rows_of_visible_targets(self.user, alerts)


class ObservationTriggerViewSet(MmaReadOnlyViewSet):
    """Observation requests the rules made, one per (Target, rule), with their status."""

    serializer_class = serializers.ObservationTriggerSerializer
    filterset_class = filters.ObservationTriggerFilter
    ordering_fields = ("created", "modified")

    def get_queryset(self) -> QuerySet:
        triggers = ObservationTrigger.objects.select_related("alert").prefetch_related("observation_records")
        return rows_of_visible_targets(self.user, triggers)


class TransientEventViewSet(MmaReadOnlyViewSet):
    """GRB, X-ray and neutrino events; on the detail, their notices and links."""

    serializer_class = serializers.TransientEventSerializer
    detail_serializer_class = serializers.TransientEventDetailSerializer
    filterset_class = filters.TransientEventFilter
    ordering_fields = ("trigger_time", "latest_notice_at")

    def get_queryset(self) -> QuerySet:
        events = TransientEvent.objects.defer("healpix")
        return events.prefetch_related("notices") if self.action == "retrieve" else events


class EventLinkViewSet(MmaReadOnlyViewSet):
    """Multi-messenger associations: GW event or transient, and transient, with time offset and sky overlap."""

    serializer_class = serializers.EventLinkSerializer
    filterset_class = filters.EventLinkFilter
    ordering_fields = ("score", "dt", "created")

    def get_queryset(self) -> QuerySet:
        return EventLink.objects.select_related("gw_event", "first", "second").defer("first__healpix",
                                                                                       "second__healpix")  # fmt: skip
