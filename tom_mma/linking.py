"""The multi-messenger linker: GW events, GRBs, X-ray transients and neutrino events that belong together.

Two events are linked when the second's time falls in a window around the first's (``TOM_MMA
['LINK_GW_WINDOWS_S']`` for a GW event and a transient, by the transient's source or messenger;
``LINK_TRANSIENT_WINDOW_S`` between two transients of different sources); IceCube's LVK track search is
linked to the superevent it names, whatever the times. Where both events are localized the link is scored by
their spatial overlap:

* GW sky map and an error circle: the GW probability inside the circle (``score``, in [0, 1]), and the
  overlap integral ``4π ∫ p_gw p_circle dΩ`` (``overlap``: 1 for unrelated positions on average, larger for
  a better match; LVK's RAVEN ranks coincidences with it), the circle taken as a 2-D Gaussian of its
  radius and containment. A circle smaller than a few of the map's pixels at its centre takes the density
  there (times its area, for the probability);
* two error circles: ``exp(-d² / 2(σ₁² + σ₂²))`` with each σ from its radius and containment (a 2-D
  Gaussian), and the matching overlap integral.

Links are kept in :class:`~tom_mma.models.EventLink` (one per pair, updated when an event changes); a new
or rescored link sends :data:`tom_mma.signals.events_linked` after its transaction commits (the broker
publishes a derived alert for it). A retracted transient loses its links.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from django.db import transaction

from .conf import mma_settings
from .models import EventLink, GWEvent, TransientEvent

__all__ = [
    "Overlap",
    "circle_probability",
    "circles_overlap",
    "connect",
    "gw_window",
    "link_gw_event",
    "joint_ranking",
    "link_transient",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Overlap:
    """The spatial agreement of two localizations."""

    probability: float
    overlap: float


def _sigma(radius_deg: float, containment: float | None) -> float:
    """The σ (rad) of a 2-D Gaussian whose ``containment`` lies within ``radius_deg``."""
    c = min(max(containment or 0.9, 1e-6), 1 - 1e-9)
    return math.radians(radius_deg) / math.sqrt(-2.0 * math.log(1.0 - c))


def _disc_area(radius_deg: float) -> float:
    return 2 * math.pi * (1 - math.cos(math.radians(radius_deg)))


def _separation(ra1: float, dec1: float, ra2: np.ndarray | float, dec2: np.ndarray | float) -> np.ndarray:
    ra1, dec1, ra2, dec2 = map(np.radians, (ra1, dec1, ra2, dec2))
    # haversine: accurate at small separations
    h = np.sin((dec2 - dec1) / 2) ** 2 + np.cos(dec1) * np.cos(dec2) * np.sin((ra2 - ra1) / 2) ** 2
    return 2 * np.arcsin(np.sqrt(np.clip(h, 0, 1)))


def circles_overlap(a: TransientEvent, b: TransientEvent) -> Overlap:
    """Overlap of two error circles (see the module docstring).

    Examples
    --------
    >>> from tom_mma.models import TransientEvent
    >>> x = TransientEvent(ra=10.0, dec=0.0, error_radius=1.0, containment=0.68)
    >>> round(circles_overlap(x, x).probability, 6)
    1.0
    """
    s1, s2 = _sigma(a.error_radius, a.containment), _sigma(b.error_radius, b.containment)
    d = float(_separation(a.ra, a.dec, b.ra, b.dec))
    var = s1**2 + s2**2
    probability = math.exp(-(d**2) / (2 * var))
    overlap = 4 * math.pi * probability / (2 * math.pi * var)
    return Overlap(probability, overlap)


def circle_probability(skymap, ra: float, dec: float, radius_deg: float, containment: float | None) -> Overlap:
    """The GW probability inside an error circle, and the overlap integral (see the module docstring).

    Parameters
    ----------
    skymap : tom_mma.gw.skymaps.MultiOrderSkyMap
        The GW sky map.
    ra, dec, radius_deg : float
        The circle (degrees).
    containment : float, optional
        The probability the circle holds (default 0.9, GCN's default).
    """
    import astropy.units as u
    import astropy_healpix as ah

    from .gw.skymaps import uniq_to_order_ipix

    order, ipix = uniq_to_order_ipix(skymap.uniq)
    lon = np.empty(ipix.shape)
    lat = np.empty(ipix.shape)
    for level in np.unique(order):
        mask = order == level
        lo, la = ah.healpix_to_lonlat(ipix[mask], ah.level_to_nside(int(level)), order="nested")
        lon[mask], lat[mask] = lo.to_value(u.deg), la.to_value(u.deg)
    distance = _separation(ra, dec, lon, lat)
    inside = distance <= math.radians(radius_deg)
    area = _disc_area(radius_deg)
    centre = skymap.locate(np.array([ra]), np.array([dec]))[0]
    density = skymap.probdensity
    if area < 4 * skymap.pixel_area[centre]:
        # a circle of a few pixels or less: the density at its centre (pixel centres sample it too coarsely)
        probability = float(density[centre]) * area
        overlap = 4 * math.pi * float(density[centre])
    else:
        probability = float(np.sum(density[inside] * skymap.pixel_area[inside]))
        # the circle as a 2-D Gaussian, normalized on the map's own pixels (which tile the sky)
        sigma = _sigma(radius_deg, containment)
        weight = np.exp(-(distance**2) / (2 * sigma**2))
        weight /= np.sum(weight * skymap.pixel_area)
        overlap = 4 * math.pi * float(np.sum(density * weight * skymap.pixel_area))
    return Overlap(min(max(probability, 0.0), 1.0), overlap)


def gw_window(event: TransientEvent) -> tuple[float, float]:
    """The window (seconds, transient time minus GW time) for linking ``event`` to a GW event."""
    windows = mma_settings.LINK_GW_WINDOWS_S
    low, high = windows.get(event.source, windows.get(event.messenger, windows.get("default", (-1.0, 5.0))))
    return float(low), float(high)


def _gw_skymap(gw: GWEvent):
    if gw.skymap_id is None:
        return None
    from .gw.skymaps import read_multiorder

    return read_multiorder(bytes(gw.skymap.fits))


def _score_gw(gw: GWEvent, event: TransientEvent) -> Overlap | None:
    if not event.is_localized:
        return None
    skymap = _gw_skymap(gw)
    if skymap is None:
        return None
    return circle_probability(skymap, event.ra, event.dec, event.error_radius, event.containment)


def _save(lookup: dict, basis: str, dt: float, overlap: Overlap | None, changed: list) -> EventLink:
    values = {
        "basis": EventLink.Basis.SPACE if overlap is not None and basis == "time" else basis,
        "dt": dt,
        "score": None if overlap is None else overlap.probability,
        "overlap": None if overlap is None else overlap.overlap,
    }
    link = EventLink.objects.filter(**lookup).first()
    if link is None:
        link = EventLink.objects.create(**lookup, **values)
        changed.append((link.pk, True))
    elif any(getattr(link, k) != v for k, v in values.items()):
        for k, v in values.items():
            setattr(link, k, v)
        link.save()
        changed.append((link.pk, False))
    return link


def _announce(changed: Iterable[tuple[int, bool]]) -> None:
    from .signals import events_linked

    for pk, created in changed:
        link = EventLink.objects.select_related("gw_event", "first", "second").filter(pk=pk).first()
        if link is not None:
            events_linked.send(sender=EventLink, link=link, created=created)


def link_transient(event_pk: int) -> list[EventLink]:
    """Link a transient to the GW events and other transients it belongs with (idempotent).

    Returns
    -------
    list of EventLink
        Its links now.
    """
    changed: list[tuple[int, bool]] = []
    with transaction.atomic():
        event = TransientEvent.objects.select_for_update().get(pk=event_pk)
        if event.state == TransientEvent.State.RETRACTED:
            EventLink.objects.filter(second=event).delete()
            EventLink.objects.filter(first=event).delete()
            return []
        links = []
        low, high = gw_window(event)
        gws = GWEvent.objects.filter(state=GWEvent.State.ACTIVE, event_time__isnull=False)
        near = gws.filter(event_time__gte=event.trigger_time - _td(high), event_time__lte=event.trigger_time - _td(low))
        named = gws.filter(superevent_id=event.superevent_id) if event.superevent_id else gws.none()
        for gw in {g.pk: g for g in [*near, *named]}.values():
            dt = (event.trigger_time - gw.event_time).total_seconds()
            basis = EventLink.Basis.NAMED if gw.superevent_id == event.superevent_id else EventLink.Basis.TIME
            links.append(_save({"gw_event": gw, "second": event}, basis, dt, _score_gw(gw, event), changed))
        window = float(mma_settings.LINK_TRANSIENT_WINDOW_S)
        others = (
            TransientEvent.objects.filter(state=TransientEvent.State.ACTIVE, is_test=event.is_test)
            .exclude(source=event.source)
            .filter(
                trigger_time__gte=event.trigger_time - _td(window), trigger_time__lte=event.trigger_time + _td(window)
            )
        )
        for other in others:
            first, second = sorted([event, other], key=lambda e: (e.trigger_time, e.pk))
            dt = (second.trigger_time - first.trigger_time).total_seconds()
            overlap = circles_overlap(first, second) if first.is_localized and second.is_localized else None
            links.append(_save({"first": first, "second": second}, EventLink.Basis.TIME, dt, overlap, changed))
        transaction.on_commit(lambda: _announce(changed), robust=True)
    for link in links:
        logger.info("linked %s (score %s)", link, link.score)
    return links


def link_gw_event(gw_pk: int) -> list[EventLink]:
    """Link a GW event to the transients within their windows, and those naming it (idempotent)."""
    gw = GWEvent.objects.filter(pk=gw_pk).first()
    if gw is None or gw.event_time is None:
        return []
    widest = max((max(abs(float(a)), abs(float(b))) for a, b in mma_settings.LINK_GW_WINDOWS_S.values()), default=5.0)
    candidates = TransientEvent.objects.filter(state=TransientEvent.State.ACTIVE).filter(
        trigger_time__gte=gw.event_time - _td(widest), trigger_time__lte=gw.event_time + _td(widest)
    ) | TransientEvent.objects.filter(state=TransientEvent.State.ACTIVE, superevent_id=gw.superevent_id)
    links = []
    for event in candidates.distinct():
        links += [link for link in link_transient(event.pk) if link.gw_event_id == gw.pk]
    return links


def _td(seconds: float):
    import datetime as dt

    return dt.timedelta(seconds=seconds)


def on_gw_changed(sender, event=None, **kwargs) -> None:
    """A GW notice or sky map arrived (after its commit): link the event again (scores follow the new map)."""
    if event is not None and event.is_active:
        link_gw_event(event.pk)


def connect() -> None:
    """Connect the linker to tom_mma's GW signals (idempotent)."""
    from .signals import gw_notice_received, gw_skymap_updated

    gw_notice_received.connect(on_gw_changed, dispatch_uid="tom_mma.linking.notice")
    gw_skymap_updated.connect(on_gw_changed, dispatch_uid="tom_mma.linking.skymap")


def joint_ranking(candidates: Iterable, transient: TransientEvent) -> list[tuple[object, float]]:
    """GW candidates re-ranked by the joint localization with a linked transient's error circle.

    Each candidate's GW probability density is multiplied by the circle's density at its position (a 2-D
    Gaussian of the circle's radius and containment, per steradian); the order is by that product, highest
    first. Candidates without a position in the circle's reach keep a product near 0.

    Parameters
    ----------
    candidates : iterable
        Objects with ``probdensity`` and ``target.ra``/``target.dec`` (:class:`tom_mma.models.EventCandidate`).
    transient : TransientEvent
        A localized transient (``ra``, ``dec``, ``error_radius``).

    Returns
    -------
    list of (candidate, joint density)

    Examples
    --------
    >>> from types import SimpleNamespace as N
    >>> grb = TransientEvent(ra=10.0, dec=0.0, error_radius=2.0, containment=0.68)
    >>> near = N(probdensity=1.0, target=N(ra=10.5, dec=0.0))
    >>> denser_but_far = N(probdensity=3.0, target=N(ra=20.0, dec=0.0))
    >>> [c is near for c, _ in joint_ranking([denser_but_far, near], grb)]
    [True, False]
    """
    if not transient.is_localized:
        raise ValueError("the transient has no error circle")
    items = list(candidates)
    if not items:
        return []
    sigma = _sigma(transient.error_radius, transient.containment)
    ra = np.array([float(c.target.ra) for c in items])
    dec = np.array([float(c.target.dec) for c in items])
    distance = _separation(transient.ra, transient.dec, ra, dec)
    circle = np.exp(-(distance**2) / (2 * sigma**2)) / (2 * math.pi * sigma**2)
    joint = np.array([float(c.probdensity) for c in items]) * circle
    order = np.argsort(-joint, kind="stable")
    return [(items[i], float(joint[i])) for i in order]
