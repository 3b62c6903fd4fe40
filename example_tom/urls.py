"""URLs of the example TOM."""

from django.conf import settings
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView

from tom_mma.views import HomeView

urlpatterns = [
    # the MMA home page (also at /mma/ in any TOM with tom_mma installed) in place of tomtoolkit's welcome page;
    # tomtoolkit's "home" URL name still reverses to "/"
    path("", HomeView.as_view(), name="mma-home"),
    # browsers ask for /favicon.ico whatever the page says (a plain-text page, an image): tomtoolkit's icon
    path("favicon.ico", RedirectView.as_view(url=static("tom_common/img/favicon.ico"), permanent=True)),
    # tomtoolkit 3.1's tom_common.urls leaves out tom_alerts' pages, whose navbar link every page reverses
    path("alerts/", include("tom_alerts.urls", namespace="alerts")),
    path("", include("tom_common.urls")),
]

if getattr(settings, "OIDC_RP_CLIENT_ID", ""):
    # OIDC login (docs/oidc.md): /oidc/authenticate/ starts it, /oidc/callback/ is the redirect URI
    urlpatterns.insert(0, path("oidc/", include("tom_mma.oidc.urls")))
