"""URLs of GW events; include under a prefix, e.g. ``path("gw/", include("tom_mma.gw.urls"))``."""

from django.urls import path

from ..transients.views import TransientEventDetailView
from .views import EventDetailView, EventListView, EventSkyMapView

app_name = "tom_mma_gw"

urlpatterns = [
    path("", EventListView.as_view(), name="event-list"),
    path("transients/<int:pk>/", TransientEventDetailView.as_view(), name="transient-detail"),
    path("<str:superevent_id>/", EventDetailView.as_view(), name="event-detail"),
    path("<str:superevent_id>/skymap.png", EventSkyMapView.as_view(), name="event-skymap"),
]
