"""The alert archive: every message of every subscribed topic, its quarantine and per-topic health."""

from __future__ import annotations

import uuid

from django.db import models

from .formats import ArchiveJSONEncoder

__all__ = ["ArchivedAlert", "QuarantinedAlert", "TopicHealth", "SnewsDeciderState"]


class ArchivedAlert(models.Model):
    """One Kafka message, kept once, with its raw bytes.

    ``key`` makes ingest idempotent: ``id:<hop _id uuid>`` when the message carries hop's
    ``_id`` header, ``kafka:<topic>/<partition>/<offset>`` when it does not, and
    ``sha256:<topic>/<digest>`` for a file replayed with ``replayalerts``.
    """

    class Status(models.TextChoices):
        HANDLED = "handled", "handled"
        ARCHIVED = "archived", "archived (no handler)"
        QUARANTINED = "quarantined", "quarantined"
        TEST = "test", "test message (handler not run)"

    key = models.CharField(max_length=300, unique=True)
    message_id = models.UUIDField(null=True, blank=True, help_text="hop's _id header")
    topic = models.CharField(max_length=249)
    partition = models.IntegerField(null=True, blank=True)
    offset = models.BigIntegerField(null=True, blank=True)
    kafka_timestamp = models.DateTimeField(null=True, blank=True)
    received = models.DateTimeField(db_index=True)
    headers = models.JSONField(default=list, blank=True, help_text="[[name, value]], bytes as base64")
    format = models.CharField(max_length=16)
    payload = models.BinaryField(help_text="the message's bytes as received")
    size = models.IntegerField()
    content = models.JSONField(
        null=True,
        blank=True,
        encoder=ArchiveJSONEncoder,
        help_text="decoded content, where the format is known",
    )
    status = models.CharField(max_length=16, choices=Status.choices)

    class Meta:
        ordering = ["-received", "-id"]
        indexes = [models.Index(fields=["topic", "partition", "offset"], name="tmb_alert_tpo")]

    def __str__(self) -> str:
        return f"{self.origin} ({self.format}, {self.status})"

    @property
    def origin(self) -> str:
        """Where the message came from (``topic[partition]@offset``, or the replay that stored it)."""
        from .subjects import origin_of

        return origin_of(self.key, self.topic, self.partition, self.offset)

    @property
    def subject(self) -> str:
        """The superevent, candidate or event the message is about (``""`` if it names none)."""
        from .subjects import subject_of

        return subject_of(self.content)


class QuarantinedAlert(models.Model):
    """Why an archived message was not handled: undecodable, wrong schema, or a handler that kept raising."""

    alert = models.OneToOneField(ArchivedAlert, on_delete=models.CASCADE, related_name="quarantine")
    stage = models.CharField(max_length=16, help_text="decode or handle")
    reason = models.TextField(help_text="the latest failure")
    first_reason = models.TextField(blank=True, help_text="the failure that first quarantined the message")
    error_type = models.CharField(max_length=200)
    traceback = models.TextField(blank=True)
    attempts = models.IntegerField(default=1)
    created = models.DateTimeField(auto_now_add=True)
    released = models.DateTimeField(null=True, blank=True, help_text="when it was handled again")

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"{self.alert}: {self.reason[:80]}"


class TopicHealth(models.Model):
    """Running counts and the last error of one topic, updated once per batch."""

    topic = models.CharField(max_length=249, unique=True)
    last_message_at = models.DateTimeField(null=True, blank=True)
    messages_handled = models.BigIntegerField(default=0)
    messages_archived = models.BigIntegerField(default=0, help_text="archived, no handler for the topic")
    messages_quarantined = models.BigIntegerField(default=0)
    duplicates = models.BigIntegerField(default=0)
    messages_test = models.BigIntegerField(default=0, help_text="hop test messages, archived, no handler run")
    last_error = models.TextField(blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    updated = models.DateTimeField(auto_now=True)
    # written by a reading stream every HEALTH_HEARTBEAT_S (tom_mma_broker.health.record_heartbeat)
    listening_at = models.DateTimeField(null=True, blank=True, help_text="when a stream last said it reads it")
    consumer_group = models.CharField(max_length=255, blank=True, help_text="the group of that stream")
    consumer_lag = models.BigIntegerField(
        null=True, blank=True, help_text="messages on the broker not yet committed by the group, at listening_at"
    )

    class Meta:
        ordering = ["topic"]
        verbose_name_plural = "topic health"

    def __str__(self) -> str:
        return self.topic


def new_message_id() -> uuid.UUID:
    """A fresh message id (hop's ``_id`` header is a uuid4)."""
    return uuid.uuid4()


class Candidate(models.Model):
    """An optical transient the broker follows: one per object, merged by name, alias and position."""

    name = models.CharField(max_length=200, unique=True)
    aliases = models.JSONField(default=list, blank=True)
    ra = models.FloatField()
    dec = models.FloatField()
    gw_event = models.CharField(max_length=64, blank=True, default="", help_text="superevent it follows")
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        indexes = [models.Index(fields=["dec", "ra"], name="tmb_candidate_pos")]

    def __str__(self) -> str:
        return self.name


class CandidatePoint(models.Model):
    """One photometric measurement of a candidate, stored once (keyed on the source's point id)."""

    candidate = models.ForeignKey(Candidate, on_delete=models.CASCADE, related_name="points")
    point_id = models.CharField(max_length=64, unique=True)
    message_id = models.UUIDField(null=True, blank=True, help_text="hop _id of the source message")
    mjd = models.FloatField()
    band = models.CharField(max_length=32)
    magnitude = models.FloatField()
    magnitude_error = models.FloatField(null=True, blank=True)
    upper_limit = models.BooleanField(default=False)
    system = models.CharField(max_length=8, default="AB")
    telescope = models.CharField(max_length=100, blank=True, default="")
    instrument = models.CharField(max_length=100, blank=True, default="")
    source = models.CharField(max_length=200, blank=True, default="")
    received = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["mjd", "id"]
        indexes = [models.Index(fields=["candidate", "mjd"], name="tmb_point_cand_mjd")]

    def __str__(self) -> str:
        return f"{self.candidate_id} {self.band} {self.magnitude} @ {self.mjd}"


class Classification(models.Model):
    """A kilonova score of a candidate's light curve, with the model version and features used.

    ``input_digest`` (model version + the point ids) makes classification idempotent: the same
    points and model never give a second row, however often the task runs.
    """

    candidate = models.ForeignKey(Candidate, on_delete=models.CASCADE, related_name="classifications")
    model_version = models.CharField(max_length=100)
    input_digest = models.CharField(max_length=64)
    score = models.FloatField()
    features = models.JSONField(default=dict)
    n_points = models.IntegerField()
    latest_point_mjd = models.FloatField()
    source_message_ids = models.JSONField(default=list)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created", "-id"]
        constraints = [models.UniqueConstraint(fields=["candidate", "input_digest"], name="tmb_classification_once")]

    def __str__(self) -> str:
        return f"{self.candidate} {self.score:.3f} ({self.model_version})"


class OutboxMessage(models.Model):
    """A derived alert waiting to be published (written in the classification's transaction)."""

    alert_id = models.UUIDField(unique=True)
    topic = models.CharField(max_length=249)
    kind = models.CharField(max_length=16, default="classification")
    classification = models.ForeignKey(Classification, null=True, blank=True, on_delete=models.SET_NULL)
    payload = models.BinaryField()
    created = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    attempts = models.IntegerField(default=0)
    last_error = models.TextField(blank=True)
    claimed_until = models.DateTimeField(
        null=True, blank=True, help_text="a publisher holds it until then (its fate unknown): nobody else sends it"
    )

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["sent_at", "id"], name="tmb_outbox_pending")]

    def __str__(self) -> str:
        return f"{self.kind} {self.alert_id} -> {self.topic} ({'sent' if self.sent_at else 'pending'})"


class SnewsDeciderState(models.Model):
    """The SNEWS coincidence decider's whole state (its caches of every lane), written with each message.

    Written in the ingest transaction of the message that changed it, with the alerts queued in the outbox:
    after a restart the decider goes on from here, so that no coincidence is lost and none is published twice.
    ``revision`` changes with every write; a process whose cached decider has another revision reloads it.
    """

    name = models.CharField(max_length=64, unique=True, default="default")
    state = models.JSONField(default=dict)
    revision = models.UUIDField(default=uuid.uuid4)
    messages = models.BigIntegerField(default=0, help_text="messages taken")
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "SNEWS decider state"

    def __str__(self) -> str:
        return f"SNEWS decider {self.name} ({self.messages} messages)"
