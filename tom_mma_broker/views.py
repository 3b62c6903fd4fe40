"""The stream health page: thin over :func:`tom_mma_broker.health.stream_health`."""

from __future__ import annotations

from django.contrib.auth.mixins import LoginRequiredMixin
from django.views.generic import TemplateView

from .health import stream_health

__all__ = ["StreamHealthView", "home_panel_context"]


class StreamHealthView(LoginRequiredMixin, TemplateView):
    """Per topic: last message, rate, consumer lag, quarantined, last error; whether the TOM is listening."""

    template_name = "tom_mma_broker/stream_health.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["health"] = stream_health()
        return context


def home_panel_context(context) -> dict:
    """Context of the MMA home page's stream health panel (``mma_home_panels`` of the app config).

    The streams' health (topics, errors) only for a logged-in user, as on the stream health page.
    """
    request = context.get("request")
    if request is None or not request.user.is_authenticated:
        return {"health": None}
    return {"health": stream_health()}
