"""The MMA home page: thin over :func:`tom_mma.home.home_page`."""

from __future__ import annotations

from django.views.generic import TemplateView

from .home import home_page

__all__ = ["HomeView"]


class HomeView(TemplateView):
    """The MMA home page: what is happening at a glance.

    Active GW events and their candidates, derived alerts, GRB and neutrino events, the streams, the requests
    waiting. Mounted at ``mma/`` (and at the example TOM's ``/``).
    """

    template_name = "tom_mma/home.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["page"] = home_page(self.request.user, context | {"request": self.request})
        return context
