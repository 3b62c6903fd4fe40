"""Serializers of ``tom_mma``'s API: plain JSON of the rows, alert text as strings (never marked safe)."""

from __future__ import annotations

from rest_framework import serializers

from tom_mma.models import (
    DerivedAlertRecord,
    EventCandidate,
    EventLink,
    EventNotice,
    EventSkyMap,
    GWEvent,
    ObservationTrigger,
    TransientEvent,
    TransientNotice,
)

__all__ = [
    "DerivedAlertDetailSerializer",
    "DerivedAlertSerializer",
    "EventCandidateSerializer",
    "EventLinkSerializer",
    "GWEventDetailSerializer",
    "GWEventSerializer",
    "NoticeDetailSerializer",
    "NoticeSerializer",
    "ObservationTriggerSerializer",
    "SkyMapSerializer",
    "TransientEventDetailSerializer",
    "TransientEventSerializer",
]


class SkyMapSerializer(serializers.ModelSerializer):
    """A sky map version's figures (the FITS bytes stay in the TOM)."""

    class Meta:
        model = EventSkyMap
        fields = ("id", "kind", "sha256", "size_bytes", "n_pixels", "max_order", "creator", "ra", "dec", "area_50",
                  "area_90", "distance_mean", "distance_std", "first_time_created")  # fmt: skip


class NoticeSerializer(serializers.ModelSerializer):
    """An LVK notice's metadata."""

    superevent_id = serializers.CharField(source="event.superevent_id", read_only=True)
    skymap_sha256 = serializers.CharField(source="skymap.sha256", read_only=True, default=None)

    class Meta:
        model = EventNotice
        fields = ("id", "superevent_id", "alert_type", "time_created", "transport", "digest", "skymap_sha256",
                  "received")  # fmt: skip


class NoticeDetailSerializer(NoticeSerializer):
    """An LVK notice with its payload (without its sky maps: their SHA-256 instead)."""

    class Meta(NoticeSerializer.Meta):
        fields = (*NoticeSerializer.Meta.fields, "payload")


class TransientEventSerializer(serializers.ModelSerializer):
    """A GRB, X-ray or neutrino event, with the figures of its latest notice."""

    retracted = serializers.SerializerMethodField()
    has_healpix = serializers.SerializerMethodField()

    class Meta:
        model = TransientEvent
        fields = ("id", "source", "event_id", "name", "messenger", "state", "retracted", "retracted_at", "is_test",
                  "trigger_time", "ra", "dec", "error_radius", "containment", "healpix_url", "has_healpix",
                  "superevent_id", "far", "record_number", "latest_notice_at", "properties")  # fmt: skip

    def get_retracted(self, obj: TransientEvent) -> bool:
        return obj.state == TransientEvent.State.RETRACTED

    def get_has_healpix(self, obj: TransientEvent) -> bool:
        return obj.healpix is not None


class TransientNoticeSerializer(serializers.ModelSerializer):
    class Meta:
        model = TransientNotice
        fields = ("id", "alert_type", "record_number", "alert_time", "digest", "received", "content")


class EventLinkSerializer(serializers.ModelSerializer):
    """A multi-messenger association: a GW event or a transient (``first``), and a transient (``second``)."""

    gw_event = serializers.SlugRelatedField(slug_field="superevent_id", read_only=True)
    first = TransientEventSerializer(read_only=True)
    second = TransientEventSerializer(read_only=True)

    class Meta:
        model = EventLink
        fields = ("id", "gw_event", "first", "second", "basis", "dt", "score", "overlap", "created", "modified")


class TransientEventDetailSerializer(TransientEventSerializer):
    """A transient with its notices and its links (as the later or the earlier event)."""

    notices = TransientNoticeSerializer(many=True, read_only=True)
    links = serializers.SerializerMethodField()

    class Meta(TransientEventSerializer.Meta):
        fields = (*TransientEventSerializer.Meta.fields, "notices", "links")

    def get_links(self, obj: TransientEvent) -> list[dict]:
        links = EventLink.objects.filter(first=obj) | EventLink.objects.filter(second=obj)
        return EventLinkSerializer(links.select_related("gw_event", "first", "second"), many=True).data


class GWEventSerializer(serializers.ModelSerializer):
    """A GW superevent with the figures of its latest notice and its current sky map."""

    retracted = serializers.SerializerMethodField()
    never_live = serializers.BooleanField(read_only=True)
    skymap = SkyMapSerializer(read_only=True)

    class Meta:
        model = GWEvent
        fields = ("superevent_id", "kind", "state", "retracted", "retracted_at", "never_live", "event_time", "far",
                  "significant", "group", "pipeline", "search", "instruments", "classification", "properties",
                  "skymap", "latest_notice_at", "created", "modified")  # fmt: skip

    def get_retracted(self, obj: GWEvent) -> bool:
        return obj.state == GWEvent.State.RETRACTED


class GWEventDetailSerializer(GWEventSerializer):
    """An event with its notices (metadata), sky map versions and linked GRB, X-ray and neutrino events."""

    notices = NoticeSerializer(many=True, read_only=True)
    skymaps = serializers.SerializerMethodField()
    links = serializers.SerializerMethodField()

    class Meta(GWEventSerializer.Meta):
        fields = (*GWEventSerializer.Meta.fields, "notices", "skymaps", "links")

    def get_skymaps(self, obj: GWEvent) -> list[dict]:
        return SkyMapSerializer(obj.skymaps.defer("fits"), many=True).data

    def get_links(self, obj: GWEvent) -> list[dict]:
        links = obj.links.select_related("gw_event", "first", "second")
        return EventLinkSerializer(links, many=True).data


class EventCandidateSerializer(serializers.ModelSerializer):
    """Where a Target falls in an event's current sky map: its rank."""

    superevent_id = serializers.CharField(source="event.superevent_id", read_only=True)
    target_name = serializers.CharField(source="target.name", read_only=True)
    ra = serializers.FloatField(source="target.ra", read_only=True)
    dec = serializers.FloatField(source="target.dec", read_only=True)
    skymap_sha256 = serializers.CharField(source="skymap.sha256", read_only=True)

    class Meta:
        model = EventCandidate
        fields = ("id", "superevent_id", "target", "target_name", "ra", "dec", "credible_level", "probdensity",
                  "distance_mean", "distance_std", "retracted", "skymap_sha256", "ranked_at")  # fmt: skip


class DerivedAlertSerializer(serializers.ModelSerializer):
    """A derived alert this TOM received: a kilonova classification (with its model version) or a retraction."""

    class Meta:
        model = DerivedAlertRecord
        fields = ("alert_id", "kind", "target", "candidate_name", "ra", "dec", "kilonova_score", "model_version",
                  "features", "gw_event", "latest_point_mjd", "alert_created", "received", "source_message_ids",
                  "retracts", "retracted", "retraction_reason")  # fmt: skip


class DerivedAlertDetailSerializer(DerivedAlertSerializer):
    """A derived alert with the message as received and where it came from."""

    class Meta(DerivedAlertSerializer.Meta):
        fields = (*DerivedAlertSerializer.Meta.fields, "delivery", "raw")


class ObservationTriggerSerializer(serializers.ModelSerializer):
    """An observation request a rule made for a Target."""

    alert = serializers.SlugRelatedField(slug_field="alert_id", read_only=True)

    class Meta:
        model = ObservationTrigger
        fields = ("id", "target", "rule", "alert", "facility", "status", "reason", "details", "error", "attempts",
                  "observation_records", "created", "modified")  # fmt: skip
