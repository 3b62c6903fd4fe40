"""Views of GW events: the list, an event's page (sky map picture, notice timeline, candidates), the picture.

Thin: they read through :mod:`tom_mma.gw.events` and render. Candidates are filtered by the viewer's Target
permissions (``tom_targets.permissions.targets_for_user``).
"""

from __future__ import annotations

import hashlib

from django.core.cache import cache
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404
from django.views import View
from django.views.generic import DetailView, ListView
from tom_targets.models import Target
from tom_targets.permissions import targets_for_user

from tom_mma.models import EventObservation, EventSkyMap, GWEvent

from .plotting import PLOT_VERSION, PlotCandidate, skymap_png
from .ranking import candidates as ranked_candidates
from .skymap_store import load_skymap

__all__ = ["EventDetailView", "EventListView", "EventSkyMapView"]

_CANDIDATES_SHOWN = 500
_PLOT_CACHE_SECONDS = 3600


def _visible_candidates(request, event: GWEvent):
    visible = targets_for_user(request.user, Target.objects.all(), "view_target")
    return ranked_candidates(event).filter(target__in=visible.values("pk"))


class EventListView(ListView):
    """Live events first; retracted ones below (an event only ever seen retracted is labelled so)."""

    template_name = "tom_mma/gw/event_list.html"
    context_object_name = "events"

    def get_queryset(self):
        return GWEvent.objects.filter(state=GWEvent.State.ACTIVE).select_related("skymap").defer("skymap__fits")

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["retracted"] = GWEvent.objects.filter(state=GWEvent.State.RETRACTED).order_by("-retracted_at")[:50]
        return context


class EventDetailView(DetailView):
    """An event: sky map picture, notice timeline, sky map versions, candidates, observation requests."""

    template_name = "tom_mma/gw/event_detail.html"
    context_object_name = "event"
    slug_field = slug_url_kwarg = "superevent_id"

    def get_queryset(self):
        return GWEvent.objects.select_related("skymap").defer("skymap__fits")

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        event = self.object
        candidates = _visible_candidates(self.request, event)
        context.update(
            notices=event.notices.select_related("skymap", "combined_skymap").defer(
                "skymap__fits", "combined_skymap__fits"
            ),
            skymaps=event.skymaps.defer("fits"),
            candidates=candidates[:_CANDIDATES_SHOWN],
            candidate_count=candidates.count(),
            inside_90=candidates.filter(credible_level__lte=0.9).count(),
            observations=EventObservation.objects.filter(event=event).select_related("observation_record"),
            links=event.links.select_related("second"),
        )
        # candidates re-ranked by the joint localization with the best-scored linked, localized transient
        best = event.links.filter(score__isnull=False, second__error_radius__isnull=False).select_related("second")
        best = best.order_by("-overlap").first()
        if best is not None:
            from ..linking import joint_ranking

            context["joint_with"] = best.second
            context["joint_candidates"] = joint_ranking(candidates.select_related("target")[:_CANDIDATES_SHOWN],
                                                        best.second)[:20]  # fmt: skip
        return context


class EventSkyMapView(View):
    """PNG of an event's sky map (the current one, or ``?version=<pk>``) with the viewer's candidates."""

    def get(self, request, superevent_id: str):
        event = get_object_or_404(GWEvent, superevent_id=superevent_id)
        versions = EventSkyMap.objects.defer("fits").filter(event=event)
        version_pk = request.GET.get("version")
        if version_pk:
            version = get_object_or_404(versions, pk=version_pk) if version_pk.isdigit() else None
            if version is None:
                raise Http404("no such sky map version")
        elif event.skymap_id:
            version = versions.get(pk=event.skymap_id)
        else:
            raise Http404("this event has no sky map")
        rows = list(
            _visible_candidates(request, event)
            .filter(skymap=version)
            .values_list("target__name", "target__ra", "target__dec", "credible_level")[:_CANDIDATES_SHOWN]
        )
        key = hashlib.sha256(repr((version.sha256, rows, PLOT_VERSION)).encode()).hexdigest()
        png = cache.get(f"tom_mma:gw:plot:{key}")
        if png is None:
            candidates = [PlotCandidate(name, ra, dec, level) for name, ra, dec, level in rows]
            png = skymap_png(load_skymap(version), candidates, title=event.superevent_id)
            cache.set(f"tom_mma:gw:plot:{key}", png, _PLOT_CACHE_SECONDS)
        response = HttpResponse(png, content_type="image/png")
        response["Cache-Control"] = "private, max-age=300"
        return response
