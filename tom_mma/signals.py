"""Documented signals of ``tom_mma``.

Other apps (``tom_mma_broker`` among them) connect to these instead of importing ``tom_mma`` internals. Every
signal is sent after the database transaction that caused it has committed (``transaction.on_commit``), so a
receiver sees the stored rows and a rolled-back ingest sends nothing.

Signals
-------
gw_notice_received
    A new LVK notice was stored (a redelivered one is not sent again).
    ``sender``: :class:`tom_mma.models.EventNotice`; keyword arguments: ``notice`` (the stored
    ``EventNotice``), ``event`` (its :class:`tom_mma.models.GWEvent`).
gw_skymap_updated
    An event's current GW sky map changed (a new version arrived, in notice order); its candidates are
    re-ranked. ``sender``: :class:`tom_mma.models.GWEvent`; keyword arguments: ``event``, ``skymap`` (the
    :class:`tom_mma.models.EventSkyMap`).
gw_event_retracted
    An event became retracted. Its candidates are already marked retracted and the cancellation of its
    pending observation requests has been queued. A derived alert that cited the event should be followed by
    a retraction message (the broker's job). ``sender``: :class:`tom_mma.models.GWEvent`; keyword arguments:
    ``event``, ``notice`` (the retraction ``EventNotice``), ``never_live`` (True when the event was never
    seen before its retraction).
gw_observations_to_cancel
    Observation requests of an event await cancellation at their facilities (a request linked to an event
    that was already retracted). ``sender``: :class:`tom_mma.models.GWEvent`; keyword argument: ``event``.
observation_trigger_claimed
    An observation rule held and claimed its trigger (a ``pending``
    :class:`tom_mma.models.ObservationTrigger`); the request is yet to be sent to the facility.
    ``sender``: :class:`tom_mma.models.ObservationTrigger`; keyword argument: ``trigger_id``.
transient_event_changed
    A GRB, X-ray or neutrino event (:class:`tom_mma.models.TransientEvent`) was created, updated or retracted
    by a notice. ``sender``: ``TransientEvent``; keyword arguments: ``event_pk``, ``outcome``.
events_linked
    The linker associated two events (or changed the association's score). ``sender``:
    :class:`tom_mma.models.EventLink`; keyword arguments: ``link`` (the ``EventLink``), ``created``.
optical_photometry_added
    An optical alert (ZTF, Rubin, Fink) added new photometry to a Target; the broker hands it to its
    classifier. ``sender``: :class:`tom_mma.optical.alerts.OpticalAlert`; keyword arguments: ``target``, ``alert``
    (the :class:`~tom_mma.optical.alerts.OpticalAlert`), ``points`` (the new points, as dicts in the
    ``tom-mma/photometry/v1`` form without ``point_id``/``time``), ``placements`` (tuple of
    :class:`tom_mma.optical.service.GWPlacement`: each active event's credible level and days since merger),
    ``gw_event`` (the superevent whose credible region and time window hold the candidate, or None).
"""

from django.dispatch import Signal

__all__ = [
    "events_linked",
    "gw_event_retracted",
    "gw_notice_received",
    "gw_observations_to_cancel",
    "gw_skymap_updated",
    "observation_trigger_claimed",
    "optical_photometry_added",
    "transient_event_changed",
]

gw_notice_received = Signal()
gw_skymap_updated = Signal()
gw_event_retracted = Signal()
gw_observations_to_cancel = Signal()
observation_trigger_claimed = Signal()
transient_event_changed = Signal()
events_linked = Signal()
optical_photometry_added = Signal()
