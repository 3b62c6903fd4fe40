"""The broker's models in the Django admin.

The archive, its quarantine, topic health, candidates with their photometry and classifications, the outbox
and the SNEWS decider's state.

History is read-only (an archived message, a classification, a point is what was received or computed);
what a person acts on has an action (re-handle a quarantined message). Alert content is untrusted text:
the admin escapes it like any field.
"""

from __future__ import annotations

import base64
import json

from django.contrib import admin, messages
from django.db import transaction
from django.db.models import Count, OuterRef, Subquery
from django.utils.html import format_html

from .models import (
    ArchivedAlert,
    Candidate,
    CandidatePoint,
    Classification,
    OutboxMessage,
    QuarantinedAlert,
    SnewsDeciderState,
    TopicHealth,
)
from .subjects import search_archive


class ReadOnlyAdmin(admin.ModelAdmin):
    """A history model: listed and shown, never added, edited or deleted by hand."""

    show_full_result_count = False  # counting a large table on every page is slow

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


def _pre(text: str) -> str:
    """Text in a ``<pre>`` that keeps its indentation and scrolls rather than widening the page (escaped)."""
    return format_html('<pre style="white-space: pre; overflow-x: auto; max-width: 100%">{}</pre>', text or "")


class QuarantineInline(admin.StackedInline):
    model = QuarantinedAlert
    extra = 0
    can_delete = False
    fields = readonly_fields = (
        "stage", "reason_text", "first_reason", "error_type", "attempts", "created", "released", "traceback_text",
    )  # fmt: skip

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="reason")
    def reason_text(self, obj: QuarantinedAlert) -> str:
        return _pre(obj.reason)

    @admin.display(description="traceback")
    def traceback_text(self, obj: QuarantinedAlert) -> str:
        return _pre(obj.traceback)


@admin.register(ArchivedAlert)
class ArchivedAlertAdmin(ReadOnlyAdmin):
    """The archive: every message as received. Read-only: it is the record replays and audits rely on."""

    # the received time second: with the admin's sidebar and filters, the last columns scroll out of view
    list_display = ("id", "received_at", "subject", "topic", "origin", "format", "status", "size")
    list_filter = ("status", "format", "topic")
    # the subject is inside the decoded content: searched as text there (the key and hop _id too)
    search_fields = ("key", "topic")  # the key holds the hop _id
    date_hierarchy = "received"
    exclude = ("payload", "content", "headers")
    readonly_fields = (
        "key", "origin", "subject", "message_id", "topic", "partition", "offset", "kafka_timestamp", "received",
        "format", "size", "status", "headers_pretty", "content_pretty", "payload_preview",
    )  # fmt: skip
    #: bytes of the raw payload shown in the admin (the full payload can be megabytes)
    PREVIEW_BYTES = 4096
    inlines = [QuarantineInline]

    def get_search_results(self, request, queryset, search_term):
        found, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        if search_term:
            found = found | search_archive(queryset, search_term)  # the subject is in the decoded content
        return found, may_have_duplicates

    @admin.display(description="subject")
    def subject(self, obj: ArchivedAlert) -> str:
        return obj.subject

    @admin.display(description="origin")
    def origin(self, obj: ArchivedAlert) -> str:
        return obj.origin

    @admin.display(description="received (UTC)", ordering="received")
    def received_at(self, obj: ArchivedAlert) -> str:
        # one unbreakable line: the list column no longer clips or wraps the time
        return format_html('<span style="white-space: nowrap">{}</span>', f"{obj.received:%Y-%m-%d %H:%M:%S}")

    @admin.display(description="headers")
    def headers_pretty(self, obj: ArchivedAlert) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.headers, indent=1))

    @admin.display(description="content")
    def content_pretty(self, obj: ArchivedAlert) -> str:
        text = json.dumps(obj.content, indent=1, default=str)
        if len(text) > 100_000:
            text = text[:100_000] + "\n... (truncated)"
        return format_html("<pre>{}</pre>", text)

    @admin.display(description="payload (raw bytes)")
    def payload_preview(self, obj: ArchivedAlert) -> str:
        """A hex dump (offset, hex, printable ASCII) and the base64 of the first bytes of the payload."""
        data = bytes(obj.payload or b"")
        head = data[: self.PREVIEW_BYTES]
        lines = []
        for start in range(0, len(head), 16):
            chunk = head[start : start + 16]
            text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
            lines.append(f"{start:08x}  {chunk.hex(' '):<47}  {text}")
        more = f" (first {len(head)} shown)" if len(data) > len(head) else ""
        return format_html(
            "<p>{} bytes{}</p><pre>{}</pre>"
            '<p>base64:</p><pre style="white-space: pre-wrap; overflow-wrap: anywhere">{}</pre>',
            len(data),
            more,
            "\n".join(lines),
            base64.b64encode(head).decode(),
        )


@admin.register(QuarantinedAlert)
class QuarantinedAlertAdmin(ReadOnlyAdmin):
    """Why a message was not handled; read-only but for the action that handles it again."""

    list_display = ("id", "alert", "topic", "stage", "error_type", "short_reason", "attempts", "created", "released")
    list_filter = ("stage", "released", "error_type")
    list_select_related = ("alert",)
    search_fields = ("reason", "alert__key", "alert__topic")
    fields = readonly_fields = (
        "alert", "stage", "reason_text", "first_reason_text", "error_type", "traceback_text", "attempts", "created",
        "released",
    )  # fmt: skip
    actions = ["rehandle"]

    @admin.display(description="topic", ordering="alert__topic")
    def topic(self, obj: QuarantinedAlert) -> str:
        return obj.alert.topic

    @admin.display(description="reason")
    def short_reason(self, obj: QuarantinedAlert) -> str:
        return obj.reason if len(obj.reason) <= 120 else obj.reason[:119] + "…"

    @admin.display(description="reason")
    def reason_text(self, obj: QuarantinedAlert) -> str:
        return _pre(obj.reason)

    @admin.display(description="first reason")
    def first_reason_text(self, obj: QuarantinedAlert) -> str:
        return _pre(obj.first_reason)

    @admin.display(description="traceback")
    def traceback_text(self, obj: QuarantinedAlert) -> str:
        return _pre(obj.traceback)

    @admin.action(description="Handle the selected messages again (after fixing the cause)")
    def rehandle(self, request, queryset) -> None:
        from .tasks import rehandle_quarantined

        pks = list(queryset.filter(released__isnull=True).values_list("alert_id", flat=True))
        for pk in pks:
            transaction.on_commit(lambda pk=pk: rehandle_quarantined.delay(pk), robust=True)
        self.message_user(request, f"{len(pks)} message(s) queued to be handled again.", messages.INFO)


@admin.register(TopicHealth)
class TopicHealthAdmin(ReadOnlyAdmin):
    list_display = (
        "topic", "last_message_at", "messages_handled", "messages_archived", "messages_quarantined",
        "messages_test", "duplicates", "last_error_at",
    )  # fmt: skip
    readonly_fields = list_display + ("last_error", "updated")  # the stream writes these counts


class PointInline(admin.TabularInline):
    model = CandidatePoint
    fields = readonly_fields = ("mjd", "band", "magnitude", "magnitude_error", "upper_limit", "system", "telescope")
    extra = 0
    can_delete = False
    max_num = 0  # no "add another"

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class ClassificationInline(admin.TabularInline):
    model = Classification
    fields = readonly_fields = ("created", "score", "model_version", "n_points", "latest_point_mjd")
    extra = 0
    can_delete = False
    max_num = 0
    show_change_link = True

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Candidate)
class CandidateAdmin(ReadOnlyAdmin):
    """The broker's optical candidates, with their photometry and kilonova-score history."""

    list_display = ("name", "gw_event", "ra", "dec", "n_points", "latest_score", "created", "updated")
    list_filter = ("gw_event",)
    search_fields = ("name", "aliases", "gw_event")
    readonly_fields = ("name", "aliases", "ra", "dec", "gw_event", "created", "updated")
    inlines = [ClassificationInline, PointInline]

    def get_queryset(self, request):
        latest = Classification.objects.filter(candidate=OuterRef("pk")).order_by("-created", "-id")
        return (
            super()
            .get_queryset(request)
            .annotate(n_points=Count("points"), latest_score=Subquery(latest.values("score")[:1]))
        )

    @admin.display(description="points", ordering="n_points")
    def n_points(self, obj: Candidate) -> int:
        return obj.n_points

    @admin.display(description="latest score", ordering="latest_score")
    def latest_score(self, obj: Candidate) -> str:
        return "" if obj.latest_score is None else f"{obj.latest_score:.3f}"


@admin.register(CandidatePoint)
class CandidatePointAdmin(ReadOnlyAdmin):
    list_display = ("candidate", "mjd", "band", "magnitude", "magnitude_error", "upper_limit", "telescope", "received")
    list_filter = ("band", "upper_limit", "telescope")
    search_fields = ("candidate__name", "point_id", "=message_id")
    list_select_related = ("candidate",)


@admin.register(Classification)
class ClassificationAdmin(ReadOnlyAdmin):
    """Kilonova scores: each row keeps its model version and the features it was computed from."""

    list_display = ("candidate", "score", "model_version", "n_points", "latest_point_mjd", "created")
    list_filter = ("model_version",)
    search_fields = ("candidate__name", "input_digest")
    list_select_related = ("candidate",)
    date_hierarchy = "created"


@admin.register(OutboxMessage)
class OutboxMessageAdmin(ReadOnlyAdmin):
    """Derived alerts queued for publication; the publisher marks them sent."""

    list_display = ("alert_id", "kind", "topic", "created", "sent_at", "attempts", "last_error")
    list_filter = ("kind", "topic", ("sent_at", admin.EmptyFieldListFilter))
    search_fields = ("=alert_id", "topic")
    exclude = ("payload",)
    readonly_fields = ("payload_text",)

    @admin.display(description="payload")
    def payload_text(self, obj: OutboxMessage) -> str:
        return _pre(bytes(obj.payload or b"").decode("utf-8", "replace"))


@admin.register(SnewsDeciderState)
class SnewsDeciderStateAdmin(ReadOnlyAdmin):
    """The SNEWS decider's saved state: editing it by hand would lose or repeat coincidences."""

    list_display = ("name", "messages", "revision", "updated")
    exclude = ("state",)
    readonly_fields = ("state_text",)

    @admin.display(description="state")
    def state_text(self, obj: SnewsDeciderState) -> str:
        return _pre(json.dumps(obj.state, indent=1, default=str)[:100_000])
