"""OIDC login configured from the environment, for a TOM's ``settings.py``.

::

    from tom_mma.oidc.environment import oidc_settings

    _oidc = oidc_settings(os.environ)  # {} unless OIDC_RP_CLIENT_ID is set
    if _oidc:
        TOM_MMA.update(_oidc.pop("TOM_MMA"))
        AUTHENTICATION_BACKENDS = [*AUTHENTICATION_BACKENDS, *_oidc.pop("AUTHENTICATION_BACKENDS")]
        globals().update(_oidc)

This module imports nothing of Django's, reads only the mapping it is given and makes no network call:
the provider's endpoints are discovered at the first login (:mod:`tom_mma.oidc.provider`). The variables,
their defaults and the checks that guard them are in ``docs/oidc.md``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["oidc_settings"]

# explicit endpoints win over discovery (a provider without a discovery document, or one behind a proxy)
_ENDPOINTS = (
    "OIDC_OP_AUTHORIZATION_ENDPOINT",
    "OIDC_OP_TOKEN_ENDPOINT",
    "OIDC_OP_USER_ENDPOINT",
    "OIDC_OP_JWKS_ENDPOINT",
    "OIDC_OP_LOGOUT_ENDPOINT",
)


def _list(value: str) -> list[str]:
    return [item for item in re.split(r"[\s,]+", value) if item]


def oidc_settings(environ: Mapping[str, str]) -> dict[str, Any]:
    """The Django settings of an OIDC login read from environment variables; ``{}`` when it is off.

    Parameters
    ----------
    environ : Mapping
        Usually ``os.environ``. ``OIDC_RP_CLIENT_ID`` turns the login on.

    Returns
    -------
    dict
        mozilla-django-oidc's settings (PKCE on, S256), ``AUTHENTICATION_BACKENDS`` to add, and ``TOM_MMA``:
        the ``OIDC_*`` keys to merge into the TOM's ``TOM_MMA``.

    Examples
    --------
    >>> oidc_settings({})
    {}
    >>> s = oidc_settings({"OIDC_RP_CLIENT_ID": "tom", "OIDC_ISSUER": "https://idp.example.org/realms/a",
    ...                    "OIDC_GROUP_MAP": '{"Observers": ["glob:obs-*"]}', "OIDC_STAFF_SUBJECTS": "s1, s2"})
    >>> s["OIDC_USE_PKCE"], s["OIDC_RP_SIGN_ALGO"], "OIDC_OP_TOKEN_ENDPOINT" in s
    (True, 'RS256', False)
    >>> s["TOM_MMA"]["OIDC_GROUP_MAP"], s["TOM_MMA"]["OIDC_STAFF_SUBJECTS"]
    ({'Observers': ['glob:obs-*']}, ['s1', 's2'])
    """
    client_id = environ.get("OIDC_RP_CLIENT_ID", "")
    if not client_id:
        return {}
    django: dict[str, Any] = {
        "OIDC_RP_CLIENT_ID": client_id,
        "OIDC_RP_CLIENT_SECRET": environ.get("OIDC_RP_CLIENT_SECRET", ""),  # tom_mma.E060 when missing
        # most providers (Keycloak, CILogon, Google) sign ID tokens with RS256; HS256 uses the client secret
        "OIDC_RP_SIGN_ALGO": environ.get("OIDC_RP_SIGN_ALGO", "RS256"),
        "OIDC_RP_SCOPES": environ.get("OIDC_RP_SCOPES", "openid email profile"),
        "OIDC_CREATE_USER": environ.get("OIDC_CREATE_USER", "1") == "1",
        "OIDC_USE_PKCE": True,
        "OIDC_PKCE_CODE_CHALLENGE_METHOD": "S256",
        # mozilla-django-oidc waits forever by default
        "OIDC_TIMEOUT": float(environ.get("OIDC_TIMEOUT", "10")),
        # tom_mma's views also when a TOM includes mozilla_django_oidc.urls
        "OIDC_AUTHENTICATE_CLASS": "tom_mma.oidc.views.AuthenticationRequestView",
        "OIDC_CALLBACK_CLASS": "tom_mma.oidc.views.CallbackView",
        "AUTHENTICATION_BACKENDS": ["tom_mma.auth.OIDCBackend"],
    }
    for name in _ENDPOINTS:
        if environ.get(name):
            django[name] = environ[name]
    tom_mma: dict[str, Any] = {"OIDC_ISSUER": environ.get("OIDC_ISSUER", "")}  # tom_mma.E064 when missing
    for name in ("OIDC_PROVIDER_NAME", "OIDC_USERNAME_CLAIM", "OIDC_GROUPS_CLAIM", "OIDC_UNMAPPED_USERS"):
        if environ.get(name):
            tom_mma[name] = environ[name]
    for name in ("OIDC_STAFF_SUBJECTS", "OIDC_SUPERUSER_SUBJECTS"):
        if environ.get(name):
            tom_mma[name] = _list(environ[name])
    if environ.get("OIDC_GROUP_MAP"):
        try:
            tom_mma["OIDC_GROUP_MAP"] = json.loads(environ["OIDC_GROUP_MAP"])
        except ValueError:
            # kept as text: check tom_mma.E066 says it is not a mapping, rather than a traceback at start-up
            tom_mma["OIDC_GROUP_MAP"] = environ["OIDC_GROUP_MAP"]
    django["TOM_MMA"] = tom_mma
    return django
