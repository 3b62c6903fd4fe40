"""URLs of the example TOM."""

from django.urls import include, path

urlpatterns = [
    # tomtoolkit 3.1's tom_common.urls leaves out tom_alerts' pages, whose navbar link every page reverses
    path("alerts/", include("tom_alerts.urls", namespace="alerts")),
    path("", include("tom_common.urls")),
]
