"""Sky map versions of GW events: stored once per content (SHA-256), parsed once per process (a small cache).

:func:`store_skymap` keeps a version in the database (bytes and summary figures); :func:`load_skymap` gives the
parsed map of a stored version, from a per-process cache keyed by its SHA-256.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from tom_mma.models import EventSkyMap, GWEvent

from .skymaps import MultiOrderSkyMap, read_multiorder

__all__ = ["SKYMAP_CACHE_SIZE", "load_skymap", "store_skymap"]

# Parsed sky maps kept per process, by SHA-256 (a parsed map with its lookups is ~2 MB).
# Proposed setting: TOM_MMA["GW_SKYMAP_CACHE_SIZE"].
SKYMAP_CACHE_SIZE = 8

_cache: OrderedDict[str, MultiOrderSkyMap] = OrderedDict()
_cache_lock = threading.Lock()


def _remember(skymap: MultiOrderSkyMap) -> MultiOrderSkyMap:
    with _cache_lock:
        _cache[skymap.sha256] = skymap
        _cache.move_to_end(skymap.sha256)
        while len(_cache) > SKYMAP_CACHE_SIZE:
            _cache.popitem(last=False)
    return skymap


def load_skymap(version: EventSkyMap) -> MultiOrderSkyMap:
    """The parsed sky map of a stored version, from a per-process cache keyed by its SHA-256.

    ``version`` may be loaded with ``.defer("fits")``: the bytes are fetched only on a cache miss.
    """
    with _cache_lock:
        cached = _cache.get(version.sha256)
        if cached is not None:
            _cache.move_to_end(version.sha256)
            return cached
    data = EventSkyMap.objects.values_list("fits", flat=True).get(pk=version.pk)
    return _remember(read_multiorder(bytes(data)))


def store_skymap(event: GWEvent, kind: str, skymap: MultiOrderSkyMap, time_created) -> EventSkyMap:
    """Store a sky map version of ``event`` (or find the stored one with the same bytes) and return it.

    A version seen again keeps its row: an earlier ``time_created`` (an older notice that arrived late)
    moves its first appearance back, and bytes first seen as a combined map become a GW map when a notice
    gives them as one.
    """
    existing = EventSkyMap.objects.defer("fits").filter(event=event, sha256=skymap.sha256).first()
    if existing is not None:
        changed = []
        if time_created < existing.first_time_created:  # an older notice that arrived late
            existing.first_time_created = time_created
            changed.append("first_time_created")
        if kind == EventSkyMap.Kind.GW and existing.kind != kind:
            # the same bytes as a GW map in one notice and a combined map in another: GW wins, whatever the
            # arrival order
            existing.kind = kind
            changed.append("kind")
        if changed:
            existing.save(update_fields=changed)
        return existing
    summary = skymap.summary()
    return EventSkyMap.objects.create(
        event=event,
        kind=kind,
        sha256=skymap.sha256,
        fits=skymap.fits_bytes,
        size_bytes=len(skymap.fits_bytes),
        n_pixels=summary.n_pixels,
        max_order=summary.max_order,
        creator=str(skymap.meta.get("CREATOR", ""))[:64],
        ra=summary.ra,
        dec=summary.dec,
        area_50=summary.area_50,
        area_90=summary.area_90,
        distance_mean=summary.distance_mean,
        distance_std=summary.distance_std,
        first_time_created=time_created,
    )
