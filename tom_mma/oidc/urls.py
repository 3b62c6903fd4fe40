"""OIDC login URLs: ``path("oidc/", include("tom_mma.oidc.urls"))`` in the TOM's ``urls.py``.

The names are mozilla-django-oidc's, so its settings and middleware find them; the redirect URI to
register at the provider is ``https://<your TOM>/oidc/callback/``.
"""

from django.urls import path
from mozilla_django_oidc.views import OIDCLogoutView

from . import views

urlpatterns = [
    path("callback/", views.CallbackView.as_view(), name="oidc_authentication_callback"),
    path("authenticate/", views.AuthenticationRequestView.as_view(), name="oidc_authentication_init"),
    path("logout/", OIDCLogoutView.as_view(), name="oidc_logout"),
]
