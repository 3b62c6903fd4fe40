"""Serializers of the broker's API: alert content as plain JSON data, raw payloads as base64."""

from __future__ import annotations

import base64

from rest_framework import serializers

from tom_mma_broker.models import ArchivedAlert, Candidate, CandidatePoint, Classification, QuarantinedAlert
from tom_mma_broker.subjects import subject_of

__all__ = [
    "ArchivedAlertDetailSerializer",
    "ArchivedAlertSerializer",
    "CandidateDetailSerializer",
    "CandidateSerializer",
    "ClassificationSerializer",
    "QuarantinedAlertDetailSerializer",
    "QuarantinedAlertSerializer",
]


class ArchivedAlertSerializer(serializers.ModelSerializer):
    """An archived message's metadata; ``subject``: the superevent, candidate or event it is about."""

    subject = serializers.SerializerMethodField()
    quarantined = serializers.SerializerMethodField()

    class Meta:
        model = ArchivedAlert
        fields = ("id", "key", "message_id", "subject", "topic", "partition", "offset", "kafka_timestamp",
                  "received", "format", "size", "status", "quarantined")  # fmt: skip

    def get_subject(self, obj: ArchivedAlert) -> str:
        return subject_of(obj.content)

    def get_quarantined(self, obj: ArchivedAlert) -> bool:
        return obj.status == ArchivedAlert.Status.QUARANTINED


class ArchivedAlertDetailSerializer(ArchivedAlertSerializer):
    """An archived message with its headers, decoded content and raw bytes (``payload_base64``)."""

    payload_base64 = serializers.SerializerMethodField()

    class Meta(ArchivedAlertSerializer.Meta):
        fields = (*ArchivedAlertSerializer.Meta.fields, "headers", "content", "payload_base64")

    def get_payload_base64(self, obj: ArchivedAlert) -> str:
        return base64.b64encode(bytes(obj.payload or b"")).decode("ascii")


class QuarantinedAlertSerializer(serializers.ModelSerializer):
    """Why an archived message was not handled."""

    topic = serializers.CharField(source="alert.topic", read_only=True)

    class Meta:
        model = QuarantinedAlert
        fields = ("id", "alert", "topic", "stage", "reason", "first_reason", "error_type", "attempts", "created",
                  "released")  # fmt: skip


class QuarantinedAlertDetailSerializer(QuarantinedAlertSerializer):
    class Meta(QuarantinedAlertSerializer.Meta):
        fields = (*QuarantinedAlertSerializer.Meta.fields, "traceback")


class ClassificationSerializer(serializers.ModelSerializer):
    """A kilonova score with the model version and the features it was computed from."""

    candidate_name = serializers.CharField(source="candidate.name", read_only=True)

    class Meta:
        model = Classification
        fields = ("id", "candidate", "candidate_name", "score", "model_version", "features", "n_points",
                  "latest_point_mjd", "source_message_ids", "input_digest", "created")  # fmt: skip


class PointSerializer(serializers.ModelSerializer):
    class Meta:
        model = CandidatePoint
        fields = ("point_id", "mjd", "band", "magnitude", "magnitude_error", "upper_limit", "system", "telescope",
                  "instrument", "source", "received")  # fmt: skip


class CandidateSerializer(serializers.ModelSerializer):
    """An optical candidate the broker follows."""

    class Meta:
        model = Candidate
        fields = ("id", "name", "aliases", "ra", "dec", "gw_event", "created", "updated")


class CandidateDetailSerializer(CandidateSerializer):
    """A candidate with its kilonova-score history (oldest first) and its photometry."""

    classifications = serializers.SerializerMethodField()
    points = PointSerializer(many=True, read_only=True)

    class Meta(CandidateSerializer.Meta):
        fields = (*CandidateSerializer.Meta.fields, "classifications", "points")

    def get_classifications(self, obj: Candidate) -> list[dict]:
        history = obj.classifications.select_related("candidate").order_by("created", "id")
        return ClassificationSerializer(history, many=True).data
