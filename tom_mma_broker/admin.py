"""The archive in the Django admin: browse messages, their quarantine and topic health.

Alert content is untrusted text: the admin escapes it like any field.
"""

from __future__ import annotations

import base64
import json

from django.contrib import admin, messages
from django.db import transaction
from django.utils.html import format_html

from .models import ArchivedAlert, QuarantinedAlert, TopicHealth


def _pre(text: str) -> str:
    """Text in a ``<pre>`` that keeps its indentation and scrolls rather than widening the page (escaped)."""
    return format_html('<pre style="white-space: pre; overflow-x: auto; max-width: 100%">{}</pre>', text or "")


class QuarantineInline(admin.StackedInline):
    model = QuarantinedAlert
    extra = 0
    can_delete = False
    readonly_fields = ("stage", "reason", "error_type", "attempts", "created", "released", "traceback_pre")
    exclude = ("traceback",)

    @admin.display(description="traceback")
    def traceback_pre(self, obj: QuarantinedAlert) -> str:
        return _pre(obj.traceback)


@admin.register(ArchivedAlert)
class ArchivedAlertAdmin(admin.ModelAdmin):
    # the received time second: with the admin's sidebar and filters, the last columns scroll out of view
    list_display = ("id", "received_at", "subject", "topic", "origin", "status", "size")
    list_filter = ("status", "format", "topic")
    search_fields = ("key", "topic")
    date_hierarchy = "received"
    exclude = ("payload", "content", "headers")
    readonly_fields = (
        "key", "origin", "subject", "message_id", "topic", "partition", "offset", "kafka_timestamp", "received",
        "format", "size",
        "status", "headers_pretty", "content_pretty", "payload_preview",
    )  # fmt: skip
    #: bytes of the raw payload shown in the admin (the full payload can be megabytes)
    PREVIEW_BYTES = 4096
    inlines = [QuarantineInline]
    show_full_result_count = False  # counting a large archive on every page is slow

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

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(QuarantinedAlert)
class QuarantinedAlertAdmin(admin.ModelAdmin):
    list_display = ("id", "alert", "stage", "error_type", "attempts", "created", "released")
    list_filter = ("stage", "released")
    search_fields = ("reason", "alert__key", "alert__topic")
    readonly_fields = ("alert", "stage", "reason", "error_type", "traceback_pre", "attempts", "created", "released")
    exclude = ("traceback",)
    actions = ["rehandle"]

    @admin.display(description="traceback")
    def traceback_pre(self, obj: QuarantinedAlert) -> str:
        return _pre(obj.traceback)

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
        "messages_test", "duplicates", "last_error_at",
    )  # fmt: skip
    readonly_fields = list_display + ("messages_test", "last_error", "updated")

    # the stream writes these counts: the admin only shows them
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
