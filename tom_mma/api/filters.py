"""Query parameters of ``tom_mma``'s API (django-filter)."""

from __future__ import annotations

import django_filters as filters
from django.db.models import Q, QuerySet

from tom_mma.models import (
    DerivedAlertRecord,
    EventCandidate,
    EventLink,
    EventNotice,
    GWEvent,
    ObservationTrigger,
    TransientEvent,
)

__all__ = [
    "DerivedAlertFilter",
    "EventCandidateFilter",
    "EventLinkFilter",
    "GWEventFilter",
    "NoticeFilter",
    "ObservationTriggerFilter",
    "TransientEventFilter",
]

# Target (and candidate) parameters are plain ids, not model choices: a choice field would list every Target
# in the browsable API's filter form and answer "not a valid choice" for an id that does not exist, telling a
# user which private Targets do.


def _target_id() -> filters.NumberFilter:
    return filters.NumberFilter(field_name="target_id")


class GWEventFilter(filters.FilterSet):
    """``state``, ``kind``, ``group``, ``significant``, ``event_time_after``/``_before``, ``far_max``."""

    event_time = filters.IsoDateTimeFromToRangeFilter()
    far_max = filters.NumberFilter(field_name="far", lookup_expr="lte")

    class Meta:
        model = GWEvent
        fields = ("superevent_id", "state", "kind", "group", "significant", "pipeline")


class NoticeFilter(filters.FilterSet):
    """``event`` (superevent id), ``alert_type``, ``time_created_after``/``_before``."""

    event = filters.CharFilter(field_name="event__superevent_id")
    time_created = filters.IsoDateTimeFromToRangeFilter()

    class Meta:
        model = EventNotice
        fields = ("event", "alert_type", "transport")


class EventCandidateFilter(filters.FilterSet):
    """``event`` (superevent id), ``target`` (id), ``target_name``, ``credible_level_max``, ``retracted``."""

    event = filters.CharFilter(field_name="event__superevent_id")
    target = _target_id()
    target_name = filters.CharFilter(field_name="target__name")
    credible_level_max = filters.NumberFilter(field_name="credible_level", lookup_expr="lte")

    class Meta:
        model = EventCandidate
        fields = ("event", "target", "target_name", "retracted")


class DerivedAlertFilter(filters.FilterSet):
    """The derived alerts' parameters.

    ``kind``, ``target``, ``candidate_name``, ``gw_event``, ``model_version``, ``retracted``, ``score_min``,
    ``received_after``/``_before``, ``latest_point_mjd_min``/``_max``.
    """

    target = _target_id()
    score_min = filters.NumberFilter(field_name="kilonova_score", lookup_expr="gte")
    received = filters.IsoDateTimeFromToRangeFilter()
    latest_point_mjd = filters.RangeFilter()

    class Meta:
        model = DerivedAlertRecord
        fields = ("kind", "target", "candidate_name", "gw_event", "model_version", "retracted")


class ObservationTriggerFilter(filters.FilterSet):
    """``target``, ``rule``, ``facility``, ``status``."""

    target = _target_id()

    class Meta:
        model = ObservationTrigger
        fields = ("target", "rule", "facility", "status")


class TransientEventFilter(filters.FilterSet):
    """``source``, ``messenger``, ``state``, ``is_test``, ``superevent_id``, ``trigger_time_after``/``_before``."""

    trigger_time = filters.IsoDateTimeFromToRangeFilter()

    class Meta:
        model = TransientEvent
        fields = ("source", "event_id", "name", "messenger", "state", "is_test", "superevent_id")


class EventLinkFilter(filters.FilterSet):
    """``gw_event`` (superevent id), ``transient`` (id, either side), ``basis``, ``score_min``."""

    gw_event = filters.CharFilter(field_name="gw_event__superevent_id")
    transient = filters.NumberFilter(method="filter_transient")
    score_min = filters.NumberFilter(field_name="score", lookup_expr="gte")

    class Meta:
        model = EventLink
        fields = ("gw_event", "basis")

    def filter_transient(self, queryset: QuerySet, name: str, value: int) -> QuerySet:
        return queryset.filter(Q(first_id=value) | Q(second_id=value))
