"""``{% oidc_login_link %}``: a "Log in with <provider>" link on the login page when OIDC login is on.

Add it to the TOM's ``account/login.html`` (the example TOM's extends tomtoolkit's)::

    {% load tom_mma_oidc %}
    {% oidc_login_link %}

It renders nothing unless an OIDC backend is in ``AUTHENTICATION_BACKENDS`` and
``mozilla_django_oidc.urls`` is included.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django import template
from django.urls import NoReverseMatch, reverse

from tom_mma.checks_oidc import oidc_backends
from tom_mma.conf import mma_settings

__all__ = ["oidc_login_link"]

register = template.Library()


@register.inclusion_tag("tom_mma/oidc/login_link.html", takes_context=True)
def oidc_login_link(context: template.Context) -> dict:
    """The URL that starts an OIDC login (keeping ``?next=``) and the provider's name, or no URL."""
    if not oidc_backends():
        return {"oidc_url": ""}
    try:
        url = reverse("oidc_authentication_init")
    except NoReverseMatch:
        return {"oidc_url": ""}
    request = context.get("request")
    # mozilla-django-oidc checks that next is a URL of this site before it follows it
    next_url = request.GET.get("next") if request is not None else None
    if next_url:
        url = f"{url}?{urlencode({'next': next_url})}"
    return {"oidc_url": url, "provider_name": mma_settings.OIDC_PROVIDER_NAME}
