"""URLs of the broker's pages; include under a prefix, e.g. ``path("streams/", include("tom_mma_broker.urls"))``."""

from django.urls import path

from .views import StreamHealthView

app_name = "tom_mma_broker"

urlpatterns = [
    path("health/", StreamHealthView.as_view(), name="stream-health"),
]
