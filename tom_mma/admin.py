"""``tom_mma``'s models in the Django admin.

GW events, their notices, sky maps and candidates, GRB, X-ray and neutrino events with their notices and
links, derived alerts, observation triggers and the simulated facility's requests.

History is read-only (an event's state comes from its notices, a derived alert is what was received): the
admin shows it and lets nothing be edited or added by hand. What a person acts on (an observation trigger
that failed) has an action. Alert text is untrusted: the admin escapes it like any field.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages

from .models import (
    DerivedAlertRecord,
    EventCandidate,
    EventLink,
    EventNotice,
    EventObservation,
    EventSkyMap,
    GWEvent,
    ObservationTrigger,
    OIDCIdentity,
    SimulatedObservation,
    TransientEvent,
    TransientNotice,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    """A history model: listed and shown, never added, edited or deleted by hand."""

    show_full_result_count = False

    def has_add_permission(self, request: Any) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: Any, obj: Any = None) -> bool:
        return False


class NoticeInline(admin.TabularInline):
    model = EventNotice
    fields = ("alert_type", "time_created", "transport", "received")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True


@admin.register(GWEvent)
class GWEventAdmin(ReadOnlyAdmin):
    list_display = ("superevent_id", "kind", "state", "event_time", "group", "far", "significant", "latest_notice_at")
    list_filter = ("state", "kind", "group", "significant")
    search_fields = ("superevent_id",)
    inlines = [NoticeInline]


@admin.register(EventNotice)
class EventNoticeAdmin(ReadOnlyAdmin):
    list_display = ("event", "alert_type", "time_created", "transport", "received")
    list_filter = ("alert_type", "transport")
    search_fields = ("event__superevent_id", "digest")
    exclude = ("payload",)


@admin.register(EventSkyMap)
class EventSkyMapAdmin(ReadOnlyAdmin):
    list_display = ("event", "kind", "sha256", "area_90", "distance_mean", "n_pixels", "first_time_created")
    list_filter = ("kind",)
    search_fields = ("event__superevent_id", "sha256")
    exclude = ("fits",)  # megabytes of FITS: not rendered into the page


@admin.register(EventCandidate)
class EventCandidateAdmin(ReadOnlyAdmin):
    list_display = ("event", "target", "credible_level", "probdensity", "distance_mean", "retracted", "ranked_at")
    list_filter = ("retracted",)
    search_fields = ("event__superevent_id", "target__name")
    list_select_related = ("event", "target")


@admin.register(EventObservation)
class EventObservationAdmin(ReadOnlyAdmin):
    list_display = ("event", "observation_record", "status", "reason", "modified")
    list_filter = ("status",)
    search_fields = ("event__superevent_id",)


@admin.register(DerivedAlertRecord)
class DerivedAlertRecordAdmin(ReadOnlyAdmin):
    list_display = ("candidate_name", "kind", "kilonova_score", "gw_event", "model_version", "retracted", "received")
    list_filter = ("kind", "retracted", "model_version")
    search_fields = ("candidate_name", "gw_event", "alert_id")
    date_hierarchy = "received"


@admin.register(ObservationTrigger)
class ObservationTriggerAdmin(ReadOnlyAdmin):
    list_display = ("target", "rule", "facility", "status", "attempts", "error", "created", "modified")
    list_filter = ("status", "rule", "facility")
    search_fields = ("target__name", "reason", "error")
    actions = ["retry"]

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return request.user.has_perm("tom_mma.change_observationtrigger")  # for the retry action

    def get_readonly_fields(self, request: Any, obj: Any = None) -> list[str]:
        return [field.name for field in self.model._meta.fields] + ["observation_records"]

    @admin.action(description="Submit the selected failed triggers again")
    def retry(self, request: Any, queryset: Any) -> None:
        from .triggers import requeue_failed

        n = requeue_failed(queryset.values_list("pk", flat=True))
        self.message_user(request, f"{n} failed trigger(s) sent to their facility again", messages.INFO)


@admin.register(SimulatedObservation)
class SimulatedObservationAdmin(ReadOnlyAdmin):
    list_display = ("observation_id", "target_id", "submitted", "scheduled_at", "completed_at", "canceled_at")
    search_fields = ("observation_id",)


class TransientNoticeInline(admin.TabularInline):
    model = TransientNotice
    fields = readonly_fields = ("alert_type", "record_number", "alert_time", "received")
    extra = 0
    can_delete = False
    show_change_link = True


class LinkInline(admin.TabularInline):
    model = EventLink
    fk_name = "second"
    fields = readonly_fields = ("gw_event", "first", "basis", "dt", "score", "overlap")
    extra = 0
    can_delete = False
    verbose_name_plural = "linked events"


@admin.register(TransientEvent)
class TransientEventAdmin(ReadOnlyAdmin):
    """GRB, X-ray and neutrino events: their state comes from their notices."""

    list_display = ("__str__", "source", "messenger", "state", "is_test", "trigger_time", "superevent_id",
                    "error_radius", "latest_notice_at")  # fmt: skip
    list_filter = ("messenger", "source", "state", "is_test")
    search_fields = ("event_id", "name", "superevent_id")
    date_hierarchy = "trigger_time"
    exclude = ("healpix",)  # a map's bytes: not rendered into the page
    inlines = [TransientNoticeInline, LinkInline]


@admin.register(TransientNotice)
class TransientNoticeAdmin(ReadOnlyAdmin):
    list_display = ("event", "alert_type", "record_number", "alert_time", "received")
    list_filter = ("alert_type", "event__source")
    search_fields = ("event__event_id", "event__name", "digest")
    list_select_related = ("event",)


@admin.register(EventLink)
class EventLinkAdmin(ReadOnlyAdmin):
    """Multi-messenger associations, as the linker found them."""

    list_display = ("gw_event", "first", "second", "basis", "dt", "score", "overlap", "modified")
    list_filter = ("basis",)
    search_fields = ("gw_event__superevent_id", "first__event_id", "second__event_id", "second__name")
    list_select_related = ("gw_event", "first", "second")


@admin.register(OIDCIdentity)
class OIDCIdentityAdmin(admin.ModelAdmin):
    """Who logs in through OIDC as whom: an administrator may link a subject to a user, or unlink it.

    The allow-list flags are read-only: they record what the allow-lists gave, so that only that is taken back.
    """

    list_display = ("subject", "issuer", "user", "last_login", "staff_granted", "superuser_granted")
    list_filter = ("issuer", "staff_granted", "superuser_granted")
    search_fields = ("subject", "user__username", "user__email")
    raw_id_fields = ("user",)
    readonly_fields = ("created", "last_login", "staff_granted", "superuser_granted")
