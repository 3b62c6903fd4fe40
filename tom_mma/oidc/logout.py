"""Logging out of the TOM also ends the session at the OIDC provider (OpenID Connect RP-Initiated Logout 1.0).

A person who logged in through the provider and logs out of the TOM (the navbar's logout: allauth's, Django's or
mozilla-django-oidc's view) is sent on to the provider's ``end_session_endpoint`` with the ID token of their
login as ``id_token_hint``, and the provider sends them back to where the TOM's logout would have taken them
(``post_logout_redirect_uri``: register it at the provider, e.g. ``https://<your TOM>/``). Otherwise the next
"Log in with ..." on a shared machine would log the same person in again without a password.

Add :class:`ProviderLogoutMiddleware` to ``MIDDLEWARE`` after ``AuthenticationMiddleware``; it does nothing
when ``TOM_MMA['OIDC_LOGOUT_AT_PROVIDER']`` is False, for users who did not log in through the provider, or
when the provider has no ``end_session_endpoint`` (the logout is then the TOM's only).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from tom_mma.conf import mma_settings

from .errors import LoginError

__all__ = ["ID_TOKEN_SESSION_KEY", "ProviderLogoutMiddleware", "provider_logout_url"]

logger = logging.getLogger(__name__)

#: where the ID token of an OIDC login is kept in the session (mozilla-django-oidc's own key)
ID_TOKEN_SESSION_KEY = "oidc_id_token"


def provider_logout_url(id_token: str, after: str) -> str | None:
    """The provider's logout URL that ends its session and comes back to ``after``; None if it has none.

    Parameters
    ----------
    id_token : str
        The ID token of the login being ended (``id_token_hint``).
    after : str
        The absolute URL the provider sends the browser back to (``post_logout_redirect_uri``).
    """
    from . import provider

    try:
        end_session = provider.endpoint("OIDC_OP_LOGOUT_ENDPOINT", required=False)
    except LoginError:  # the provider cannot be reached: the TOM's own logout has happened, say so and go on
        logger.warning("OIDC: the provider's logout endpoint is not known; the provider's session stays open")
        return None
    if not end_session:
        return None
    query = {"id_token_hint": id_token, "post_logout_redirect_uri": after}
    client_id = getattr(settings, "OIDC_RP_CLIENT_ID", "")
    if client_id:
        query["client_id"] = client_id
    return f"{end_session}{'&' if '?' in end_session else '?'}{urlencode(query)}"


class ProviderLogoutMiddleware:
    """After a logout of a user who logged in through the provider, go on to the provider's logout."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        """Send the browser on to the provider's logout when this request logged its OIDC user out."""
        session = getattr(request, "session", None)
        token = session.get(ID_TOKEN_SESSION_KEY) if session is not None else None
        was_in = bool(token) and getattr(request, "user", None) is not None and request.user.is_authenticated
        response = self.get_response(request)
        if not was_in or not mma_settings.OIDC_LOGOUT_AT_PROVIDER:
            return response
        if request.user.is_authenticated or response.status_code not in (301, 302, 303, 307, 308):
            return response  # not a logout
        after = request.build_absolute_uri(response.get("Location") or "/")
        url = provider_logout_url(token, after)
        if url:
            response["Location"] = url
        return response


def store_id_token(request: Any, id_token: str) -> None:
    """Keep the ID token of a login in the session, for :class:`ProviderLogoutMiddleware` (when it is on)."""
    if mma_settings.OIDC_LOGOUT_AT_PROVIDER and getattr(request, "session", None) is not None:
        request.session[ID_TOKEN_SESSION_KEY] = id_token
