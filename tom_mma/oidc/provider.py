"""The identity provider's endpoints: mozilla-django-oidc's ``OIDC_OP_*`` settings, else discovered.

``TOM_MMA['OIDC_ISSUER']`` names the provider; an endpoint not set explicitly (``OIDC_OP_AUTHORIZATION_ENDPOINT``,
``OIDC_OP_TOKEN_ENDPOINT``, ``OIDC_OP_USER_ENDPOINT``, ``OIDC_OP_JWKS_ENDPOINT``, ``OIDC_OP_LOGOUT_ENDPOINT``) is
read from ``<issuer>/.well-known/openid-configuration`` at the first login that needs it, never at import, and
kept ``OIDC_DISCOVERY_TTL_S`` seconds in this process.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import requests
from django.conf import settings

from ..conf import mma_settings
from .errors import LoginError

__all__ = ["ENDPOINTS", "clear_discovery_cache", "discover", "endpoint", "issuer"]

logger = logging.getLogger(__name__)

# mozilla-django-oidc setting -> the discovery document's key
ENDPOINTS = {
    "OIDC_OP_AUTHORIZATION_ENDPOINT": "authorization_endpoint",
    "OIDC_OP_TOKEN_ENDPOINT": "token_endpoint",
    "OIDC_OP_USER_ENDPOINT": "userinfo_endpoint",
    "OIDC_OP_JWKS_ENDPOINT": "jwks_uri",
    "OIDC_OP_LOGOUT_ENDPOINT": "end_session_endpoint",
}

_cache: dict[str, tuple[float, dict[str, Any]]] = {}
_lock = threading.Lock()


def issuer() -> str:
    """The configured issuer, ``TOM_MMA['OIDC_ISSUER']``, without a trailing slash change."""
    return mma_settings.OIDC_ISSUER or ""


def clear_discovery_cache() -> None:
    """Forget every discovered document (tests; a provider that moved its endpoints)."""
    with _lock:
        _cache.clear()


def discover(issuer_url: str) -> dict[str, Any]:
    """The provider's discovery document, fetched once per ``OIDC_DISCOVERY_TTL_S``.

    Parameters
    ----------
    issuer_url : str
        The issuer; the document must name exactly this issuer (OpenID Connect Discovery 1.0, 4.3).

    Raises
    ------
    LoginError
        ``provider_unavailable`` when the document cannot be fetched or names another issuer.
    """
    now = time.monotonic()
    with _lock:
        cached = _cache.get(issuer_url)
    if cached and cached[0] > now:
        return cached[1]
    url = issuer_url.rstrip("/") + "/.well-known/openid-configuration"
    try:
        response = requests.get(
            url,
            timeout=getattr(settings, "OIDC_TIMEOUT", None) or 10,
            verify=getattr(settings, "OIDC_VERIFY_SSL", True),
            proxies=getattr(settings, "OIDC_PROXY", None),
        )
        response.raise_for_status()
        document = response.json()
    except (requests.RequestException, ValueError) as exc:
        logger.warning("OIDC discovery failed at %s: %s", url, type(exc).__name__)
        raise LoginError("provider_unavailable") from None
    if not isinstance(document, dict) or document.get("issuer") != issuer_url:
        logger.warning("OIDC discovery at %s names another issuer than TOM_MMA['OIDC_ISSUER']", url)
        raise LoginError("provider_unavailable")
    with _lock:
        _cache[issuer_url] = (now + float(mma_settings.OIDC_DISCOVERY_TTL_S), document)
    return document


def endpoint(name: str, required: bool = True) -> str | None:
    """An ``OIDC_OP_*`` endpoint: the setting when set, else the discovered one.

    Parameters
    ----------
    name : str
        A key of :data:`ENDPOINTS`.
    required : bool
        When True, a missing endpoint raises :class:`LoginError` (``provider_unavailable``).
    """
    value = getattr(settings, name, None)
    if value:
        return value
    if issuer():
        value = discover(issuer()).get(ENDPOINTS[name])
    if not value and required:
        logger.warning("OIDC: %s is not set and the provider's discovery document has no %s", name, ENDPOINTS[name])
        raise LoginError("provider_unavailable")
    return value or None
