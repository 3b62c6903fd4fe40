"""The page of a GRB, X-ray or neutrino event: its figures, notices and multi-messenger links."""

from __future__ import annotations

from django.db.models import Q
from django.views.generic import DetailView

from ..models import EventLink, TransientEvent

__all__ = ["TransientEventDetailView"]


class TransientEventDetailView(DetailView):
    """A transient event with its notices and its links to GW events and other transients."""

    template_name = "tom_mma/transients/event_detail.html"
    context_object_name = "event"
    model = TransientEvent

    def get_queryset(self):
        return TransientEvent.objects.defer("healpix")

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        event = self.object
        context.update(
            notices=event.notices.order_by("alert_time", "record_number", "id"),
            links=EventLink.objects.filter(Q(second=event) | Q(first=event)).select_related(
                "gw_event", "first", "second"
            ),
        )
        return context
