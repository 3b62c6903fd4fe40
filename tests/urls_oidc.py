"""The example TOM's URLs plus ``oidc/`` (``tom_mma.oidc.urls``), for the OIDC login tests."""

from django.urls import include, path

from example_tom import urls as example_urls

urlpatterns = [path("oidc/", include("tom_mma.oidc.urls")), *example_urls.urlpatterns]
