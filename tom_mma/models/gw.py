"""Gravitational-wave events in the TOM: superevents, their notices, sky map versions, candidates, requests.

The logic lives in :mod:`tom_mma.gw.events`; these models only hold the state.
"""

from __future__ import annotations

from django.db import models

__all__ = ["EventCandidate", "EventNotice", "EventObservation", "EventSkyMap", "GWEvent"]


class GWEvent(models.Model):
    """One LVK superevent, with the figures of its latest notice and its current GW sky map."""

    class Kind(models.TextChoices):
        REAL = "real", "Real"
        MOCK = "mock", "Mock (MDC)"
        TEST = "test", "Test"

    class State(models.TextChoices):
        ACTIVE = "active", "Active"
        RETRACTED = "retracted", "Retracted"

    superevent_id = models.CharField(max_length=32, unique=True)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    state = models.CharField(max_length=16, choices=State.choices, default=State.ACTIVE, db_index=True)
    # From the latest notice that is not a retraction (empty for an event only ever seen retracted).
    event_time = models.DateTimeField(null=True, blank=True)
    far = models.FloatField(null=True, blank=True, help_text="False alarm rate (Hz)")
    significant = models.BooleanField(null=True, blank=True)
    group = models.CharField(max_length=16, blank=True)
    pipeline = models.CharField(max_length=32, blank=True)
    search = models.CharField(max_length=32, blank=True)
    instruments = models.JSONField(default=list, blank=True)
    classification = models.JSONField(default=dict, blank=True)
    properties = models.JSONField(default=dict, blank=True)
    skymap = models.ForeignKey(
        "EventSkyMap",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The GW sky map of the latest notice that has one: the map candidates are ranked against.",
    )
    # what the deferred work has done for the current sky map (the sweep sends what a lost task left)
    ranked_skymap = models.ForeignKey(
        "EventSkyMap", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="The sky map every Target was last ranked against.",
    )  # fmt: skip
    rules_skymap = models.ForeignKey(
        "EventSkyMap", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="The sky map the observation rules were last evaluated with.",
    )  # fmt: skip
    latest_notice_at = models.DateTimeField(null=True, blank=True)
    retracted_at = models.DateTimeField(null=True, blank=True, help_text="time_created of the retraction")
    created = models.DateTimeField(auto_now_add=True)
    modified = models.DateTimeField(auto_now=True)

    class Meta:
        app_label = "tom_mma"
        ordering = ("-latest_notice_at", "-id")
        verbose_name = "GW event"

    def __str__(self) -> str:
        return self.superevent_id

    @property
    def is_active(self) -> bool:
        """Whether the event is live (not retracted)."""
        return self.state == self.State.ACTIVE

    @property
    def never_live(self) -> bool:
        """A retracted event whose only notices are retractions: never shown as a live event."""
        return self.state == self.State.RETRACTED and self.event_time is None


class EventSkyMap(models.Model):
    """One version of a sky map of an event, kept as the multi-order FITS bytes (never flattened).

    Versions are deduplicated by the SHA-256 of those bytes; ``first_time_created`` (the earliest notice
    that carried it) orders them.
    """

    class Kind(models.TextChoices):
        GW = "gw", "GW"
        COMBINED = "combined", "Combined with external"

    event = models.ForeignKey(GWEvent, on_delete=models.CASCADE, related_name="skymaps")
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.GW)
    sha256 = models.CharField(max_length=64)
    fits = models.BinaryField(help_text="The multi-order FITS file as received")
    size_bytes = models.PositiveIntegerField()
    n_pixels = models.PositiveIntegerField()
    max_order = models.PositiveSmallIntegerField()
    creator = models.CharField(max_length=64, blank=True)
    ra = models.FloatField(help_text="Most probable position (deg)")
    dec = models.FloatField(help_text="Most probable position (deg)")
    area_50 = models.FloatField(help_text="50% credible area (deg2)")
    area_90 = models.FloatField(help_text="90% credible area (deg2)")
    distance_mean = models.FloatField(null=True, blank=True, help_text="Mpc; none for a map without distance")
    distance_std = models.FloatField(null=True, blank=True, help_text="Mpc")
    first_time_created = models.DateTimeField()
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        app_label = "tom_mma"
        ordering = ("first_time_created", "id")
        constraints = [models.UniqueConstraint(fields=["event", "sha256"], name="tom_mma_eventskymap_unique")]

    def __str__(self) -> str:
        return f"{self.event_id}:{self.kind}:{self.sha256[:12]}"


class EventNotice(models.Model):
    """One LVK notice of an event, stored once (keyed by its content digest, whatever the transport).

    Notices carry no sequence number: they are ordered by ``time_created``, then alert type, then digest.
    """

    class AlertType(models.TextChoices):
        EARLYWARNING = "EARLYWARNING", "Early warning"
        PRELIMINARY = "PRELIMINARY", "Preliminary"
        INITIAL = "INITIAL", "Initial"
        UPDATE = "UPDATE", "Update"
        RETRACTION = "RETRACTION", "Retraction"

    event = models.ForeignKey(GWEvent, on_delete=models.CASCADE, related_name="notices")
    digest = models.CharField(max_length=64, unique=True)
    alert_type = models.CharField(max_length=16, choices=AlertType.choices)
    alert_rank = models.PositiveSmallIntegerField(help_text="0 early warning ... 4 retraction")
    time_created = models.DateTimeField()
    transport = models.CharField(max_length=8, blank=True, help_text="avro or json: how it first came")
    skymap = models.ForeignKey(EventSkyMap, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    combined_skymap = models.ForeignKey(EventSkyMap, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    payload = models.JSONField(help_text="The notice without its sky maps (their SHA-256 instead)")
    received = models.DateTimeField(auto_now_add=True)

    class Meta:
        app_label = "tom_mma"
        ordering = ("time_created", "alert_rank", "digest")
        indexes = [models.Index(fields=["event", "time_created"], name="tom_mma_evnotice_time")]

    def __str__(self) -> str:
        return f"{self.event_id} {self.alert_type} {self.time_created:%Y-%m-%dT%H:%M:%SZ}"


class EventCandidate(models.Model):
    """Where a Target falls in an event's current sky map."""

    # No single-column indexes on event and skymap: the (event, target) and (event, credible_level) indexes
    # serve the queries, and every index costs when 10,000 candidates are re-ranked. No database-level foreign
    # keys either: these rows are derived data, rewritten 10,000 at a time under the event's lock, and the
    # database's deferred checks of three keys per row took ~100 ms of each notice's commit on PostgreSQL.
    # Django's on_delete still removes an event's, a sky map's or a Target's candidates with it.
    event = models.ForeignKey(GWEvent, on_delete=models.CASCADE, related_name="candidates", db_index=False,
                              db_constraint=False)  # fmt: skip
    target = models.ForeignKey("tom_targets.BaseTarget", on_delete=models.CASCADE, related_name="gw_candidates",
                               db_constraint=False)  # fmt: skip
    skymap = models.ForeignKey(EventSkyMap, on_delete=models.CASCADE, related_name="candidates", db_index=False,
                               db_constraint=False)  # fmt: skip
    probdensity = models.FloatField(help_text="Probability per steradian")
    credible_level = models.FloatField(help_text="Smallest credible region containing the target, 0..1")
    distance_mean = models.FloatField(null=True, blank=True, help_text="Conditional distance (Mpc)")
    distance_std = models.FloatField(null=True, blank=True, help_text="Mpc")
    retracted = models.BooleanField(default=False, help_text="The event was retracted")
    ranked_at = models.DateTimeField(auto_now=True)

    class Meta:
        app_label = "tom_mma"
        ordering = ("credible_level", "-probdensity", "target_id")
        constraints = [models.UniqueConstraint(fields=["event", "target"], name="tom_mma_eventcandidate_unique")]
        indexes = [models.Index(fields=["event", "credible_level"], name="tom_mma_evcand_level")]

    def __str__(self) -> str:
        return f"{self.target_id} in {self.event_id} at {self.credible_level:.3f}"


class EventObservation(models.Model):
    """An observation request made for a candidate of an event (so that a retraction can cancel it)."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        CANCEL_PENDING = "cancel_pending", "Cancellation pending"
        CANCELLED = "cancelled", "Cancelled at the facility"
        FLAGGED = "flagged", "Flagged: cancel by hand"
        NOT_NEEDED = "not_needed", "Already finished"

    event = models.ForeignKey(GWEvent, on_delete=models.CASCADE, related_name="observations")
    observation_record = models.ForeignKey(
        "tom_observations.ObservationRecord", on_delete=models.CASCADE, related_name="gw_event_links"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE, db_index=True)
    reason = models.TextField(blank=True)
    created = models.DateTimeField(auto_now_add=True)
    modified = models.DateTimeField(auto_now=True)

    class Meta:
        app_label = "tom_mma"
        ordering = ("created", "id")
        constraints = [
            models.UniqueConstraint(fields=["event", "observation_record"], name="tom_mma_eventobservation_unique")
        ]

    def __str__(self) -> str:
        return f"{self.event_id}/{self.observation_record_id} {self.status}"
