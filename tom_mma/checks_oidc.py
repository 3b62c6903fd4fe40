"""System checks of the OIDC login (``tom_mma.E060``-``E069``), registered by :mod:`tom_mma.checks`.

Django builds every backend of ``AUTHENTICATION_BACKENDS`` at each login, and mozilla-django-oidc's raises
``ImproperlyConfigured`` when a setting it needs is missing: a half-configured OIDC login can break the
password logins too, so these are errors.

- ``tom_mma.E060``: an OIDC backend is enabled but the client id or secret, or an endpoint, is missing.
- ``tom_mma.E061``: ``OIDC_RP_SIGN_ALGO`` is RS*/ES* but the provider's key cannot be found.
- ``tom_mma.E062``: an OIDC backend is enabled but its URLs are not included (or closed by ``AUTH_STRATEGY``).
- ``tom_mma.E063``: an ``OIDC_*`` key of ``TOM_MMA`` has the wrong type.
- ``tom_mma.E064``: ``tom_mma.auth.OIDCBackend`` is enabled but ``TOM_MMA['OIDC_ISSUER']`` is not an issuer URL.
- ``tom_mma.E065``: PKCE is off (``OIDC_USE_PKCE``) or not S256.
- ``tom_mma.E066``: ``TOM_MMA['OIDC_GROUP_MAP']`` is malformed (a bad pattern), or refuses everybody.
- ``tom_mma.E067``: subjects on the staff allow-lists while ``OIDC_ALLOW_STAFF_LOGIN`` refuses staff logins.
- ``tom_mma.E068``: the OIDC URLs are not served by ``tom_mma.oidc.views`` (no discovery, no error pages).
- ``tom_mma.E069``: no password login is left beside OIDC (no break-glass administrator).
"""

from __future__ import annotations

from urllib.parse import urlparse

from django.conf import settings
from django.core import checks
from django.urls import NoReverseMatch, Resolver404, resolve, reverse
from django.utils.module_loading import import_string

from .conf import mma_settings

__all__ = ["check_oidc", "check_oidc_settings", "oidc_backends"]

HINT = "See docs/oidc.md."
CLIENT_SETTINGS = ("OIDC_RP_CLIENT_ID", "OIDC_RP_CLIENT_SECRET")
ENDPOINT_SETTINGS = ("OIDC_OP_AUTHORIZATION_ENDPOINT", "OIDC_OP_TOKEN_ENDPOINT", "OIDC_OP_USER_ENDPOINT")


def _backend_classes() -> list[tuple[str, type]]:
    found = []
    for path in getattr(settings, "AUTHENTICATION_BACKENDS", []):
        try:
            backend = import_string(path)
        except ImportError:
            continue  # Django reports a backend that does not import when it is used
        if isinstance(backend, type):
            found.append((path, backend))
    return found


def oidc_backends() -> list[str]:
    """The entries of ``AUTHENTICATION_BACKENDS`` that are mozilla-django-oidc backends."""
    from mozilla_django_oidc.auth import OIDCAuthenticationBackend

    return [path for path, backend in _backend_classes() if issubclass(backend, OIDCAuthenticationBackend)]


def _ours() -> bool:
    from .auth import OIDCBackend

    return any(issubclass(backend, OIDCBackend) for _, backend in _backend_classes())


@checks.register()
def check_oidc(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """tom_mma.E060-E062, E064, E065, E068, E069: an enabled OIDC login is complete and safe."""
    backends = oidc_backends()
    if not backends:
        return []
    ours = _ours()
    issuer = mma_settings.OIDC_ISSUER if ours else ""
    messages: list[checks.CheckMessage] = []
    missing = [name for name in CLIENT_SETTINGS if not getattr(settings, name, None)]
    if not (ours and issuer):  # tom_mma's backend discovers the endpoints from the issuer
        missing += [name for name in ENDPOINT_SETTINGS if not getattr(settings, name, None)]
    if missing:
        messages.append(
            checks.Error(
                f"{backends[0]} is in AUTHENTICATION_BACKENDS but {', '.join(missing)} "
                f"{'is' if len(missing) == 1 else 'are'} not set: no OIDC login can work.",
                hint="Set them (the example TOM reads them from the environment; endpoints are discovered from "
                "TOM_MMA['OIDC_ISSUER'] by tom_mma.auth.OIDCBackend) or remove the backend. " + HINT,
                id="tom_mma.E060",
            )
        )
    algo = getattr(settings, "OIDC_RP_SIGN_ALGO", "RS256" if ours else "HS256")
    if (
        isinstance(algo, str)
        and algo.startswith(("RS", "ES"))
        and not getattr(settings, "OIDC_OP_JWKS_ENDPOINT", None)
        and not getattr(settings, "OIDC_RP_IDP_SIGN_KEY", None)
        and not issuer
    ):
        messages.append(
            checks.Error(
                f"OIDC_RP_SIGN_ALGO is {algo!r}, which needs the provider's public key, but neither "
                "OIDC_OP_JWKS_ENDPOINT nor OIDC_RP_IDP_SIGN_KEY (nor an issuer to discover it from) is set.",
                hint="Set TOM_MMA['OIDC_ISSUER'], or OIDC_OP_JWKS_ENDPOINT to the provider's jwks_uri. " + HINT,
                id="tom_mma.E061",
            )
        )
    messages += _check_urls(ours)
    if ours:
        messages += _check_issuer(issuer)
    if getattr(settings, "OIDC_USE_PKCE", False) is not True or (
        getattr(settings, "OIDC_PKCE_CODE_CHALLENGE_METHOD", "S256") != "S256"
    ):
        messages.append(
            checks.Error(
                "OIDC logins run without PKCE (S256): a stolen authorization code could be redeemed.",
                hint="Set OIDC_USE_PKCE = True (and leave OIDC_PKCE_CODE_CHALLENGE_METHOD at 'S256'). " + HINT,
                id="tom_mma.E065",
            )
        )
    from django.contrib.auth.backends import ModelBackend

    # allauth's AuthenticationBackend is a ModelBackend too; mozilla-django-oidc's is, but it is not a password login
    if not any(issubclass(backend, ModelBackend) for path, backend in _backend_classes() if path not in backends):
        messages.append(
            checks.Error(
                "AUTHENTICATION_BACKENDS has no password login beside OIDC: when the provider is down or "
                "misconfigured, not even an administrator can log in.",
                hint="Keep django.contrib.auth.backends.ModelBackend (or allauth's AuthenticationBackend), as "
                "TOMTOOLKIT_AUTHENTICATION_BACKENDS does, for a break-glass administrator. " + HINT,
                id="tom_mma.E069",
            )
        )
    return messages


def _check_issuer(issuer) -> list[checks.CheckMessage]:
    url = urlparse(issuer) if isinstance(issuer, str) else None
    if url and url.scheme in ("https", "http") and url.netloc and not url.query and not url.fragment:
        return []
    return [
        checks.Error(
            f"tom_mma.auth.OIDCBackend is enabled but TOM_MMA['OIDC_ISSUER'] is {issuer!r}, not the provider's "
            "issuer URL: ID tokens cannot be checked and users cannot be matched on (issuer, subject).",
            hint="Set it (environment variable OIDC_ISSUER) to the 'issuer' of the provider's "
            "/.well-known/openid-configuration, e.g. https://login.example.org/realms/astro. " + HINT,
            id="tom_mma.E064",
        )
    ]


def _check_urls(ours: bool) -> list[checks.CheckMessage]:
    callback = getattr(settings, "OIDC_AUTHENTICATION_CALLBACK_URL", "oidc_authentication_callback")
    try:
        urls = {"callback": reverse(callback), "authenticate": reverse("oidc_authentication_init")}
    except NoReverseMatch:
        return [
            checks.Error(
                "The OIDC backend is enabled but the OIDC URLs are not included: the provider cannot redirect "
                "back and nobody can start an OIDC login.",
                hint="Add path('oidc/', include('tom_mma.oidc.urls')) to the TOM's urls.py.",
                id="tom_mma.E062",
            )
        ]
    messages = []
    if getattr(settings, "AUTH_STRATEGY", "") == "LOCKED":
        import fnmatch

        open_urls = getattr(settings, "OPEN_URLS", [])
        closed = [url for url in urls.values() if not any(fnmatch.fnmatch(url, pattern) for pattern in open_urls)]
        if closed:
            messages.append(
                checks.Error(
                    f"AUTH_STRATEGY is 'LOCKED' and OPEN_URLS leaves out {', '.join(closed)}: tomtoolkit answers "
                    "403 to anybody not logged in there, so nobody can log in through OIDC.",
                    hint="Add the OIDC URLs to OPEN_URLS, e.g. OPEN_URLS += ['/oidc/*'].",
                    id="tom_mma.E062",
                )
            )
    if not ours:
        return messages
    from .oidc.views import AuthenticationRequestView, CallbackView

    wrong = []
    for name, view in (("authenticate", AuthenticationRequestView), ("callback", CallbackView)):
        try:
            served = getattr(resolve(urls[name]).func, "view_class", None)
        except Resolver404:  # pragma: no cover - reverse() found it
            served = None
        if not (isinstance(served, type) and issubclass(served, view)):
            wrong.append(urls[name])
    if not wrong:
        return messages
    return [
        *messages,
        checks.Error(
            f"{', '.join(wrong)} {'is' if len(wrong) == 1 else 'are'} not served by tom_mma.oidc.views: endpoints "
            "are not discovered from the issuer, and a failed login shows a bare error instead of a page saying why.",
            hint="Include tom_mma.oidc.urls instead of mozilla_django_oidc.urls (or set OIDC_AUTHENTICATE_CLASS and "
            "OIDC_CALLBACK_CLASS to tom_mma.oidc.views' AuthenticationRequestView and CallbackView). " + HINT,
            id="tom_mma.E068",
        ),
    ]


def _strings(value) -> bool:
    return isinstance(value, list | tuple) and all(isinstance(item, str) and item for item in value)


@checks.register()
def check_oidc_settings(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """tom_mma.E063, E066, E067: the ``OIDC_*`` keys of ``TOM_MMA`` are usable and agree."""
    from .oidc.groups import GroupMapError, compile_group_map

    s = mma_settings
    problems: list[str] = []
    for key in (
        "OIDC_USERNAME_CLAIM",
        "OIDC_FIRST_NAME_CLAIM",
        "OIDC_LAST_NAME_CLAIM",
        "OIDC_EMAIL_CLAIM",
        "OIDC_GROUPS_CLAIM",
    ):
        if not isinstance(s.raw(key), str) or not s.raw(key):
            problems.append(f"TOM_MMA['{key}'] must be a non-empty string (a claim name), not {s.raw(key)!r}.")
    for key in ("OIDC_NEW_USER_GROUPS", "OIDC_STAFF_SUBJECTS", "OIDC_SUPERUSER_SUBJECTS"):
        if not _strings(s.raw(key)):
            problems.append(f"TOM_MMA['{key}'] must be a list of non-empty strings, not {s.raw(key)!r}.")
    for key in ("OIDC_REQUIRE_VERIFIED_EMAIL", "OIDC_ALLOW_STAFF_LOGIN"):
        if not isinstance(s.raw(key), bool):
            problems.append(f"TOM_MMA['{key}'] must be True or False.")
    for key in ("OIDC_ISSUER", "OIDC_PROVIDER_NAME"):
        if not isinstance(s.raw(key), str):
            problems.append(f"TOM_MMA['{key}'] must be a string.")
    for key in ("OIDC_DISCOVERY_TTL_S", "OIDC_CLOCK_SKEW_S"):
        value = s.raw(key)
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 86400:
            problems.append(f"TOM_MMA['{key}'] must be a number of seconds (0 to 86400), not {value!r}.")
    if s.OIDC_UNMAPPED_USERS not in ("allow", "refuse"):
        problems.append(f"TOM_MMA['OIDC_UNMAPPED_USERS'] must be 'allow' or 'refuse', not {s.OIDC_UNMAPPED_USERS!r}.")
    messages: list[checks.CheckMessage] = [checks.Error(p, hint=HINT, id="tom_mma.E063") for p in problems]

    try:
        rules = compile_group_map(s.OIDC_GROUP_MAP)
    except GroupMapError as exc:
        messages.append(checks.Error(str(exc), hint="Fix the pattern. " + HINT, id="tom_mma.E066"))
    else:
        if not rules and s.OIDC_UNMAPPED_USERS == "refuse":
            messages.append(
                checks.Error(
                    "TOM_MMA['OIDC_UNMAPPED_USERS'] is 'refuse' but OIDC_GROUP_MAP maps nothing: every OIDC login "
                    "is refused.",
                    hint="Map the provider's groups to TOM groups in OIDC_GROUP_MAP, or allow unmapped users. " + HINT,
                    id="tom_mma.E066",
                )
            )
    if (
        s.OIDC_ALLOW_STAFF_LOGIN is False
        and _strings(s.OIDC_STAFF_SUBJECTS)
        and _strings(s.OIDC_SUPERUSER_SUBJECTS)
        and (s.OIDC_STAFF_SUBJECTS or s.OIDC_SUPERUSER_SUBJECTS)
    ):
        messages.append(
            checks.Error(
                "TOM_MMA['OIDC_STAFF_SUBJECTS'] or OIDC_SUPERUSER_SUBJECTS name subjects, but OIDC_ALLOW_STAFF_LOGIN "
                "is False: their logins would make them staff and then be refused.",
                hint="Empty the allow-lists (staff then use the password login) or set OIDC_ALLOW_STAFF_LOGIN. " + HINT,
                id="tom_mma.E067",
            )
        )
    return messages
