"""Models of the derived-alert flow.

The TOM's archive of derived alerts, the observation triggers they fired, and the state of the simulated
facility's requests.

``DerivedAlertRecord`` is one row per ``alert_id`` (the idempotency key of schema
``tom-mma/derived-alert/v1``); the classification rows of a Target are its kilonova-score history.
``ObservationTrigger`` is one row per (Target, rule): the database, not a query, guarantees that a
rule requests an observation of a candidate once.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone

__all__ = ["DerivedAlertRecord", "ObservationTrigger", "SimulatedObservation"]


class DerivedAlertRecord(models.Model):
    """One derived alert received by this TOM (classification or retraction)."""

    class Kind(models.TextChoices):
        CLASSIFICATION = "classification", "Classification"
        RETRACTION = "retraction", "Retraction"

    alert_id = models.UUIDField(unique=True, help_text="The alert's idempotency key.")
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.CLASSIFICATION)
    target = models.ForeignKey(
        "tom_targets.BaseTarget",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="derived_alerts",
        help_text="The Target the candidate was merged into (for a retraction: that of the retracted alert).",
    )
    candidate_name = models.CharField(max_length=100, db_index=True)
    ra = models.FloatField(help_text="degrees")
    dec = models.FloatField(db_index=True, help_text="degrees")
    kilonova_score = models.FloatField(db_index=True)
    model_version = models.CharField(max_length=100)
    features = models.JSONField(default=dict, blank=True)
    gw_event = models.CharField(max_length=64, blank=True, default="", db_index=True)
    latest_point_mjd = models.FloatField(db_index=True)
    alert_created = models.DateTimeField(help_text="When the broker made the alert.")
    received = models.DateTimeField(default=timezone.now, db_index=True)
    source_message_ids = models.JSONField(default=list, blank=True)
    retracts = models.UUIDField(null=True, blank=True, help_text="For a retraction: the alert it retracts.")
    retracted = models.BooleanField(default=False, db_index=True)
    retraction_reason = models.TextField(blank=True, default="")
    delivery = models.JSONField(
        default=dict, blank=True, help_text="Where the message came from: topic, partition, offset, hop _id."
    )
    raw = models.JSONField(help_text="The alert as received (schema v1 dict).")

    class Meta:
        app_label = "tom_mma"
        ordering = ("-received",)
        indexes = [models.Index(fields=["target", "latest_point_mjd"], name="tom_mma_derived_target_mjd")]

    def __str__(self) -> str:
        return f"{self.kind} {self.alert_id} of {self.candidate_name} (score {self.kilonova_score:.3f})"


class ObservationTrigger(models.Model):
    """An observation request a rule made for a Target; at most one per (Target, rule)."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"  # claimed; a task submits it after the ingest commits (or retries it)
        SUBMITTING = "submitting", "Submitting"  # a worker is talking to the facility
        SUBMITTED = "submitted", "Submitted"
        FAILED = "failed", "Failed"

    target = models.ForeignKey("tom_targets.BaseTarget", on_delete=models.CASCADE, related_name="+")
    rule = models.CharField(max_length=100, help_text="The rule's stable name.")
    alert = models.ForeignKey(DerivedAlertRecord, null=True, on_delete=models.SET_NULL, related_name="triggers")
    facility = models.CharField(max_length=50, blank=True, default="")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING, db_index=True)
    reason = models.TextField(blank=True, default="", help_text="Why the rule held.")
    details = models.JSONField(default=dict, blank=True, help_text="What the rule saw (score, region, ...).")
    error = models.TextField(blank=True, default="")
    attempts = models.IntegerField(default=0, help_text="Submissions tried (a facility that did not answer).")
    observation_records = models.ManyToManyField("tom_observations.ObservationRecord", blank=True, related_name="+")
    created = models.DateTimeField(auto_now_add=True)
    modified = models.DateTimeField(auto_now=True)

    class Meta:
        app_label = "tom_mma"
        ordering = ("-created",)
        constraints = [models.UniqueConstraint(fields=["target", "rule"], name="tom_mma_trigger_once_per_rule")]

    def __str__(self) -> str:
        return f"{self.rule} for target {self.target_id}: {self.status}"


class SimulatedObservation(models.Model):
    """A request at the simulated facility (``tom_mma.facilities.simulated``).

    The facility's state lives here, not in memory, so that it survives restarts; the state at any time
    follows from the stored times.
    """

    observation_id = models.CharField(max_length=64, unique=True)
    target_id = models.IntegerField(null=True)
    parameters = models.JSONField(default=dict)
    submitted = models.DateTimeField()
    scheduled_at = models.DateTimeField(help_text="PENDING -> SCHEDULED at this time.")
    completed_at = models.DateTimeField(help_text="SCHEDULED -> COMPLETED at this time.")
    canceled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        app_label = "tom_mma"
        ordering = ("-submitted",)

    def __str__(self) -> str:
        return f"simulated observation {self.observation_id}"
