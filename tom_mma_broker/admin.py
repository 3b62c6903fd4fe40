"""The archive in the Django admin: browse messages, their quarantine and topic health.

Alert content is untrusted text: the admin escapes it like any field.
"""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.db import transaction
from django.utils.html import format_html

from .models import ArchivedAlert, QuarantinedAlert, TopicHealth


class QuarantineInline(admin.StackedInline):
    model = QuarantinedAlert
    extra = 0
    can_delete = False
    readonly_fields = ("stage", "reason", "error_type", "attempts", "created", "released", "traceback")


@admin.register(ArchivedAlert)
class ArchivedAlertAdmin(admin.ModelAdmin):
    list_display = ("id", "topic", "partition", "offset", "format", "size", "status", "received")
    list_filter = ("status", "format", "topic")
    search_fields = ("key", "topic")
    date_hierarchy = "received"
    exclude = ("payload", "content", "headers")
    readonly_fields = (
        "key", "message_id", "topic", "partition", "offset", "kafka_timestamp", "received", "format", "size",
        "status", "headers_pretty", "content_pretty",
    )  # fmt: skip
    inlines = [QuarantineInline]
    show_full_result_count = False  # counting a large archive on every page is slow

    @admin.display(description="headers")
    def headers_pretty(self, obj: ArchivedAlert) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.headers, indent=1))

    @admin.display(description="content")
    def content_pretty(self, obj: ArchivedAlert) -> str:
        text = json.dumps(obj.content, indent=1, default=str)
        if len(text) > 100_000:
            text = text[:100_000] + "\n... (truncated)"
        return format_html("<pre>{}</pre>", text)

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(QuarantinedAlert)
class QuarantinedAlertAdmin(admin.ModelAdmin):
    list_display = ("id", "alert", "stage", "error_type", "attempts", "created", "released")
    list_filter = ("stage", "released")
    search_fields = ("reason", "alert__key", "alert__topic")
    readonly_fields = ("alert", "stage", "reason", "error_type", "traceback", "attempts", "created", "released")
    actions = ["rehandle"]

    @admin.action(description="Handle the selected messages again (after fixing the cause)")
    def rehandle(self, request, queryset) -> None:
        from .tasks import rehandle_quarantined

        pks = list(queryset.filter(released__isnull=True).values_list("alert_id", flat=True))
        for pk in pks:
            transaction.on_commit(lambda pk=pk: rehandle_quarantined.delay(pk), robust=True)
        self.message_user(request, f"{len(pks)} message(s) queued to be handled again.", messages.INFO)

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(TopicHealth)
class TopicHealthAdmin(admin.ModelAdmin):
    list_display = (
        "topic", "last_message_at", "messages_handled", "messages_archived", "messages_quarantined",
        "duplicates", "last_error_at",
    )  # fmt: skip
    readonly_fields = list_display + ("last_error", "updated")
