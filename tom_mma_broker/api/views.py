"""Viewsets of the broker's API: thin, read-only, their querysets from :mod:`tom_mma_broker.visibility`."""

from __future__ import annotations

import django_filters as filters
from django.db.models import QuerySet
from rest_framework.pagination import CursorPagination
from rest_framework.permissions import IsAuthenticated

from tom_mma.api.base import MmaReadOnlyViewSet, ModelViewPermission
from tom_mma_broker.models import ArchivedAlert, Candidate, Classification, QuarantinedAlert
from tom_mma_broker.subjects import search_archive
from tom_mma_broker.visibility import rows_of_visible_candidates, visible_candidates

from . import serializers

__all__ = ["ArchiveViewSet", "CandidateViewSet", "ClassificationViewSet", "QuarantineViewSet"]


class ArchivePagination(CursorPagination):
    """Newest first, by cursor: no count of a large archive per page (``?cursor=`` from ``next``)."""

    ordering = "-id"
    page_size = 100
    page_size_query_param = "limit"
    max_page_size = 1000


class ArchiveFilter(filters.FilterSet):
    """The archive's parameters.

    ``q`` (text in the key, topic or content: a superevent or candidate name), ``topic``, ``status``,
    ``format``, ``message_id``, ``key``, ``received_after``/``_before``.
    """

    q = filters.CharFilter(method="filter_q", label="Text in the key, topic or decoded content")
    received = filters.IsoDateTimeFromToRangeFilter()

    class Meta:
        model = ArchivedAlert
        fields = ("topic", "status", "format", "message_id", "key", "partition")

    def filter_q(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return search_archive(queryset, value)


class QuarantineFilter(filters.FilterSet):
    """``topic``, ``stage``, ``error_type``, ``released`` (true: handled again since)."""

    topic = filters.CharFilter(field_name="alert__topic")
    released = filters.BooleanFilter(field_name="released", lookup_expr="isnull", exclude=True)

    class Meta:
        model = QuarantinedAlert
        fields = ("topic", "stage", "error_type", "released")


class CandidateFilter(filters.FilterSet):
    class Meta:
        model = Candidate
        fields = ("name", "gw_event")


class ClassificationFilter(filters.FilterSet):
    """``candidate``, ``model_version``, ``score_min``, ``created_after``/``_before``."""

    candidate = filters.NumberFilter(field_name="candidate_id")  # an id, not a choice listing every candidate
    score_min = filters.NumberFilter(field_name="score", lookup_expr="gte")
    created = filters.IsoDateTimeFromToRangeFilter()

    class Meta:
        model = Classification
        fields = ("candidate", "model_version")


class ArchiveViewSet(MmaReadOnlyViewSet):
    """Every message of every subscribed topic: metadata in the list, headers, content and bytes on the detail.

    Needs the ``tom_mma_broker.view_archivedalert`` permission.
    """

    permission_classes = [IsAuthenticated, ModelViewPermission]
    serializer_class = serializers.ArchivedAlertSerializer
    detail_serializer_class = serializers.ArchivedAlertDetailSerializer
    filterset_class = ArchiveFilter
    filter_backends = [MmaReadOnlyViewSet.filter_backends[0]]  # the cursor orders
    pagination_class = ArchivePagination
    queryset = ArchivedAlert.objects.all()

    def get_queryset(self) -> QuerySet:
        alerts = ArchivedAlert.objects.all()
        return alerts if self.action == "retrieve" else alerts.defer("payload", "headers")


class QuarantineViewSet(MmaReadOnlyViewSet):
    """Quarantined messages with the reason; the traceback on the detail.

    Needs the ``tom_mma_broker.view_quarantinedalert`` permission.
    """

    permission_classes = [IsAuthenticated, ModelViewPermission]
    serializer_class = serializers.QuarantinedAlertSerializer
    detail_serializer_class = serializers.QuarantinedAlertDetailSerializer
    filterset_class = QuarantineFilter
    ordering_fields = ("created", "attempts")
    queryset = QuarantinedAlert.objects.select_related("alert").defer("alert__payload", "alert__content")


class CandidateViewSet(MmaReadOnlyViewSet):
    """The broker's optical candidates; the detail has the kilonova-score history and the photometry."""

    serializer_class = serializers.CandidateSerializer
    detail_serializer_class = serializers.CandidateDetailSerializer
    filterset_class = CandidateFilter
    ordering_fields = ("name", "created", "updated")

    def get_queryset(self) -> QuerySet:
        candidates = Candidate.objects.all()
        if self.action == "retrieve":
            candidates = candidates.prefetch_related("points")
        return visible_candidates(self.user, candidates)


class ClassificationViewSet(MmaReadOnlyViewSet):
    """Kilonova scores of the candidates the user may see, each with its model version and features."""

    serializer_class = serializers.ClassificationSerializer
    filterset_class = ClassificationFilter
    ordering_fields = ("created", "score", "latest_point_mjd")

    def get_queryset(self) -> QuerySet:
        rows = Classification.objects.select_related("candidate")
        return rows_of_visible_candidates(self.user, rows)
