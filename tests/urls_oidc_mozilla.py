"""The example TOM's URLs with mozilla-django-oidc's own ``urls`` (for ``tom_mma.E068``)."""

from django.urls import include, path

from example_tom import urls as example_urls

urlpatterns = [path("oidc/", include("mozilla_django_oidc.urls")), *example_urls.urlpatterns]
