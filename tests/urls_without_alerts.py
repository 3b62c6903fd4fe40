"""A TOM's urls.py as tomtoolkit 3.1's ``tom_setup`` writes it: no ``tom_alerts`` URLs (for ``tom_mma.E041``)."""

from django.urls import include, path

urlpatterns = [path("", include("tom_common.urls"))]
