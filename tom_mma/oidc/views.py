"""mozilla-django-oidc's views, made to resolve discovered endpoints and to fail with a page that says why.

Served by :mod:`tom_mma.oidc.urls` under the names mozilla-django-oidc uses (``oidc_authentication_init``,
``oidc_authentication_callback``, ``oidc_logout``). Every failure of a login ends on
``tom_mma/oidc/error.html`` (:mod:`tom_mma.oidc.errors`): never a stack trace, never a bare 400.
"""

from __future__ import annotations

import logging
from urllib.parse import urlencode

import requests
from django.contrib import auth
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from ..conf import mma_settings
from . import provider
from .errors import LoginError

__all__ = ["AuthenticationRequestView", "CallbackView", "error_page"]

logger = logging.getLogger(__name__)

# RFC 6749 4.1.2.1 / OpenID Connect Core 3.1.2.6 error codes that mean the person (or the provider) said no
REFUSALS = {"access_denied", "consent_required", "interaction_required", "account_selection_required"}


def error_page(request: HttpRequest, error: LoginError) -> HttpResponse:
    """The page of a failed login: what happened, what to do, a link to try again and the password login."""
    reason = error.reason
    name = mma_settings.OIDC_PROVIDER_NAME
    retry = ""
    if reason.retry:
        retry = reverse("oidc_authentication_init")
        next_url = request.session.get("oidc_login_next") if hasattr(request, "session") else None
        if next_url:
            retry = f"{retry}?{urlencode({'next': next_url})}"
    context = {
        "code": error.code,
        "title": reason.title.format(provider=name),
        "happened": reason.happened.format(provider=name),
        "todo": reason.todo.format(provider=name),
        "detail": error.detail,  # the provider's words: untrusted, escaped by the template
        "retry_url": retry,
    }
    return render(request, "tom_mma/oidc/error.html", context, status=reason.status)


class AuthenticationRequestView(OIDCAuthenticationRequestView):
    """Start a login: redirect to the provider's (possibly discovered) authorization endpoint."""

    def __init__(self, *args, **kwargs):
        # mozilla-django-oidc resolves the endpoint here, where a failure could not be shown as a page
        super(OIDCAuthenticationRequestView, self).__init__(*args, **kwargs)
        self.OIDC_RP_CLIENT_ID = self.get_settings("OIDC_RP_CLIENT_ID")

    def get(self, request: HttpRequest) -> HttpResponse:
        try:
            self.OIDC_OP_AUTH_ENDPOINT = provider.endpoint("OIDC_OP_AUTHORIZATION_ENDPOINT")
        except LoginError as error:
            return error_page(request, error)
        return super().get(request)


class CallbackView(OIDCAuthenticationCallbackView):
    """The redirect URI: finish the login, or show why it failed."""

    def get(self, request: HttpRequest) -> HttpResponse:
        error = request.GET.get("error")
        if error:
            if request.user.is_authenticated:
                auth.logout(request)
            self._forget_state(request)
            code = "refused" if error in REFUSALS else "provider_error"
            detail = f"{error}: {request.GET.get('error_description', '')}".strip(": ")[:500]
            logger.info("OIDC login failed at the provider (%s)", error[:64])
            return error_page(request, LoginError(code, detail))
        if "code" not in request.GET or "state" not in request.GET:
            return error_page(request, LoginError("state_mismatch"))
        states = request.session.get("oidc_states") or {}
        if request.GET["state"] not in states:
            # another tab finished this login, the session was lost, or the answer is forged
            logger.info("OIDC login failed: the state is not one this session started")
            return error_page(request, LoginError("state_mismatch"))
        try:
            response = super().get(request)
        except LoginError as error:
            return error_page(request, error)
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else None
            # the token endpoint's message may repeat what was sent: only the status is logged
            logger.warning("OIDC login failed: the provider answered HTTP %s", status)
            code = "expired" if status in (400, 401) and _oauth_error(exc.response) == "invalid_grant" else None
            return error_page(request, LoginError(code or "provider_unavailable"))
        except requests.RequestException as exc:
            logger.warning("OIDC login failed: the provider cannot be reached (%s)", type(exc).__name__)
            return error_page(request, LoginError("provider_unavailable"))
        if not request.user.is_authenticated:
            # mozilla-django-oidc's own refusals (a backend that returned no user)
            return error_page(request, LoginError("no_account"))
        return response

    @staticmethod
    def _forget_state(request: HttpRequest) -> None:
        state = request.GET.get("state")
        states = request.session.get("oidc_states")
        if state and states and state in states:
            del states[state]
            request.session.save()


def _oauth_error(response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    return body.get("error", "") if isinstance(body, dict) else ""
