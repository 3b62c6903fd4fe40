"""Gamma-ray, X-ray and neutrino events in the TOM (GCN JSON notices, SNEWS alerts), and their links.

The logic lives in :mod:`tom_mma.transients` and :mod:`tom_mma.linking`; these models only hold the state.
"""

from __future__ import annotations

from django.db import models

__all__ = ["TransientEvent", "TransientNotice", "EventLink"]


class TransientEvent(models.Model):
    """One GRB, X-ray transient or neutrino event, with the figures of its latest notice.

    Keyed on its source (``fermi-gbm``, ``swift-bat-guano``, ``svom-eclairs``, ``ep-wxt``, ``icecube-track``,
    ``icecube-lvk-nu``, ``superk-sn``, ``snews``, ``snews-gcn``) and the source's own id of the event.
    """

    class State(models.TextChoices):
        ACTIVE = "active", "Active"
        RETRACTED = "retracted", "Retracted"

    class Messenger(models.TextChoices):
        GAMMA = "gamma", "Gamma rays"
        XRAY = "x-ray", "X-rays"
        NEUTRINO = "neutrino", "Neutrinos"

    source = models.CharField(max_length=32)
    event_id = models.CharField(max_length=128)
    name = models.CharField(max_length=128, blank=True)
    messenger = models.CharField(max_length=16, choices=Messenger.choices)
    state = models.CharField(max_length=16, choices=State.choices, default=State.ACTIVE, db_index=True)
    is_test = models.BooleanField(default=False, help_text="a test, injection or fire-drill event")
    trigger_time = models.DateTimeField(db_index=True)
    ra = models.FloatField(null=True, blank=True, help_text="deg (ICRS)")
    dec = models.FloatField(null=True, blank=True, help_text="deg (ICRS)")
    error_radius = models.FloatField(null=True, blank=True, help_text="deg: radius of the error circle")
    containment = models.FloatField(null=True, blank=True, help_text="probability inside the error circle")
    healpix_url = models.CharField(max_length=500, blank=True, help_text="the source's HEALPix map URL (not fetched)")
    healpix = models.BinaryField(null=True, blank=True, help_text="a HEALPix map the notice carried")
    superevent_id = models.CharField(max_length=32, blank=True, db_index=True, help_text="the GW event it names")
    far = models.FloatField(null=True, blank=True, help_text="false alarm rate (Hz), where the source gives one")
    properties = models.JSONField(default=dict, blank=True)
    record_number = models.IntegerField(null=True, blank=True)
    latest_notice_at = models.DateTimeField(null=True, blank=True)
    retracted_at = models.DateTimeField(null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    modified = models.DateTimeField(auto_now=True)

    class Meta:
        app_label = "tom_mma"
        ordering = ("-trigger_time", "-id")
        constraints = [models.UniqueConstraint(fields=["source", "event_id"], name="tom_mma_transient_unique")]

    def __str__(self) -> str:
        return f"{self.source}:{self.name or self.event_id}"

    @property
    def is_localized(self) -> bool:
        """Whether the event has a position and an error radius."""
        return self.ra is not None and self.dec is not None and self.error_radius is not None


class TransientNotice(models.Model):
    """One notice of a transient event, stored once (keyed by its content digest)."""

    event = models.ForeignKey(TransientEvent, on_delete=models.CASCADE, related_name="notices")
    digest = models.CharField(max_length=64, unique=True)
    alert_type = models.CharField(max_length=32)
    record_number = models.IntegerField(null=True, blank=True)
    alert_time = models.DateTimeField(null=True, blank=True)
    content = models.JSONField()
    received = models.DateTimeField(auto_now_add=True)

    class Meta:
        app_label = "tom_mma"
        ordering = ("alert_time", "record_number", "id")

    def __str__(self) -> str:
        return f"{self.event_id}:{self.alert_type}:{self.record_number}"


class EventLink(models.Model):
    """A multi-messenger association: a GW event and a transient, or two transients.

    ``score`` is the joint probability of the spatial overlap where both are localized (see
    :mod:`tom_mma.linking`), else None; ``dt`` is the second's time minus the first's, in seconds.
    """

    class Basis(models.TextChoices):
        TIME = "time", "Time window"
        SPACE = "time+space", "Time window and sky overlap"
        NAMED = "named", "The notice names the event"

    gw_event = models.ForeignKey("GWEvent", null=True, blank=True, on_delete=models.CASCADE, related_name="links")
    first = models.ForeignKey(
        TransientEvent, null=True, blank=True, on_delete=models.CASCADE, related_name="links_as_first"
    )
    second = models.ForeignKey(TransientEvent, on_delete=models.CASCADE, related_name="links")
    basis = models.CharField(max_length=16, choices=Basis.choices)
    dt = models.FloatField(help_text="seconds from the first event (GW or transient) to the second")
    score = models.FloatField(null=True, blank=True, help_text="joint sky-overlap probability (where localized)")
    overlap = models.FloatField(null=True, blank=True, help_text="sky-map overlap integral (1: unrelated)")
    created = models.DateTimeField(auto_now_add=True)
    modified = models.DateTimeField(auto_now=True)

    class Meta:
        app_label = "tom_mma"
        ordering = ("-score", "dt", "id")
        constraints = [
            models.UniqueConstraint(fields=["gw_event", "second"], name="tom_mma_link_gw_unique"),
            models.UniqueConstraint(fields=["first", "second"], name="tom_mma_link_pair_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.gw_event or self.first} <-> {self.second} ({self.basis}, {self.dt:+.1f} s)"
