"""System checks of ``tom_mma`` (ids ``tom_mma.E0xx`` / ``tom_mma.W0xx``).

- ``tom_mma.W001``: an unknown key in ``TOM_MMA``.
- ``tom_mma.E040``-``E045``: the derived-alert flow (``checks_derived``).
- ``tom_mma.E060``: an OIDC backend is enabled but a required ``OIDC_*`` setting is missing.
- ``tom_mma.E061``: ``OIDC_RP_SIGN_ALGO`` is RS*/ES* but no JWKS endpoint or key is set.
- ``tom_mma.E062``: an OIDC backend is enabled but ``mozilla_django_oidc.urls`` is not included.
- ``tom_mma.E063``: an ``OIDC_*`` key of ``TOM_MMA`` has the wrong type.
- ``tom_mma.E070``: background work would be lost: no Celery broker and eager mode off.
- ``tom_mma.E120``, ``E121``: ``MAX_INFLATED_BYTES`` or ``MAX_CUTOUT_BYTES`` is not a positive integer
  (``checks_limits``).
"""

from __future__ import annotations

from django.conf import settings
from django.core import checks
from django.urls import NoReverseMatch, reverse
from django.utils.module_loading import import_string

from . import (
    checks_derived,  # noqa: F401  (registers the derived-alert checks)
    checks_limits,  # noqa: F401  (registers the decompression limit's check)
    checks_optical,  # noqa: F401  (registers the optical-alert checks)
)
from .conf import mma_settings


@checks.register()
def check_settings_keys(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """tom_mma.W001: an unknown key in ``TOM_MMA`` is probably a typo."""
    unknown = mma_settings.unknown_keys()
    if unknown:
        return [
            checks.Warning(
                f"TOM_MMA has unknown keys: {', '.join(unknown)}",
                hint="See docs/settings.md for the keys tom_mma reads.",
                id="tom_mma.W001",
            )
        ]
    return []


# --- Celery (tom_mma.E070) --------------------------------------------------------------------
CELERY_HINT = (
    "Background work (ranking Targets against GW sky maps, classification, publishing derived alerts, "
    "observation requests) runs as Celery tasks. Give the TOM a Celery app that reads Django settings "
    "(a celery.py beside settings.py and an import in the project's __init__.py: README, 'Install into an "
    'existing TOM\'), then either CELERY_BROKER_URL = "redis://127.0.0.1:6379/0" with `celery -A <project> '
    "worker` and `celery -A <project> beat` running, or, on a laptop with no worker, "
    "CELERY_TASK_ALWAYS_EAGER = True (tasks run in the process that enqueues them)."
)


@checks.register()
def check_celery(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """tom_mma.E070: tasks would go nowhere: no Celery broker is configured and eager mode is off.

    Celery's default app sends to ``amqp://guest@localhost//`` when nothing says otherwise, and does
    not read Django settings: in a TOM without a Celery app of its own, tasks are sent to a broker
    nobody reads (or lost) and nothing fails.
    """
    from celery import current_app

    conf = current_app.conf
    if conf.task_always_eager or conf.broker_url:
        return []
    ignored = [name for name in ("CELERY_BROKER_URL", "CELERY_TASK_ALWAYS_EAGER") if getattr(settings, name, None)]
    if ignored:
        message = (
            f"{' and '.join(ignored)} {'is' if len(ignored) == 1 else 'are'} set in Django settings, but the "
            "Celery app in use does not read them: tasks would go to Celery's default amqp://localhost"
        )
    else:
        message = "no Celery broker is configured and eager mode is off: tasks would go to amqp://localhost"
    return [checks.Error(message, hint=CELERY_HINT, id="tom_mma.E070")]


# --- OIDC login (tom_mma.E060-E063) -----------------------------------------------------------
# Django instantiates every backend of AUTHENTICATION_BACKENDS on each login, and
# mozilla-django-oidc's backend raises ImproperlyConfigured when a setting it needs is missing:
# a half-configured OIDC backend breaks password logins too, so these are errors.

OIDC_REQUIRED_SETTINGS = (
    "OIDC_RP_CLIENT_ID",
    "OIDC_RP_CLIENT_SECRET",
    "OIDC_OP_AUTHORIZATION_ENDPOINT",
    "OIDC_OP_TOKEN_ENDPOINT",
    "OIDC_OP_USER_ENDPOINT",
)


def oidc_backends() -> list[str]:
    """The entries of ``AUTHENTICATION_BACKENDS`` that are mozilla-django-oidc backends."""
    from mozilla_django_oidc.auth import OIDCAuthenticationBackend

    found = []
    for path in getattr(settings, "AUTHENTICATION_BACKENDS", []):
        try:
            backend = import_string(path)
        except ImportError:
            continue  # Django reports a backend that does not import when it is used
        if isinstance(backend, type) and issubclass(backend, OIDCAuthenticationBackend):
            found.append(path)
    return found


@checks.register()
def check_oidc(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """tom_mma.E060 / E061 / E062: an enabled OIDC backend has its settings and its URLs."""
    backends = oidc_backends()
    if not backends:
        return []
    messages: list[checks.CheckMessage] = []
    missing = [name for name in OIDC_REQUIRED_SETTINGS if not getattr(settings, name, None)]
    if missing:
        messages.append(
            checks.Error(
                f"{backends[0]} is in AUTHENTICATION_BACKENDS but {', '.join(missing)} "
                f"{'is' if len(missing) == 1 else 'are'} not set: every login, password ones too, fails.",
                hint="Set them (the example TOM reads them from the environment; see docs/oidc.md) "
                "or remove the backend.",
                id="tom_mma.E060",
            )
        )
    algo = getattr(settings, "OIDC_RP_SIGN_ALGO", "HS256")
    if (
        isinstance(algo, str)
        and algo.startswith(("RS", "ES"))
        and not getattr(settings, "OIDC_OP_JWKS_ENDPOINT", None)
        and not getattr(settings, "OIDC_RP_IDP_SIGN_KEY", None)
    ):
        messages.append(
            checks.Error(
                f"OIDC_RP_SIGN_ALGO is {algo!r}, which needs the provider's public key, but neither "
                "OIDC_OP_JWKS_ENDPOINT nor OIDC_RP_IDP_SIGN_KEY is set: every login, password ones too, fails.",
                hint="Set OIDC_OP_JWKS_ENDPOINT to the provider's jwks_uri (see its "
                "/.well-known/openid-configuration).",
                id="tom_mma.E061",
            )
        )
    callback = getattr(settings, "OIDC_AUTHENTICATION_CALLBACK_URL", "oidc_authentication_callback")
    try:
        reverse(callback)
        reverse("oidc_authentication_init")
    except NoReverseMatch:
        messages.append(
            checks.Error(
                "The OIDC backend is enabled but mozilla-django-oidc's URLs are not included: "
                "the provider cannot redirect back and nobody can start an OIDC login.",
                hint="Add path('oidc/', include('mozilla_django_oidc.urls')) to the TOM's urls.py.",
                id="tom_mma.E062",
            )
        )
    return messages


@checks.register()
def check_oidc_settings(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """tom_mma.E063: the ``OIDC_*`` keys of ``TOM_MMA`` have the right types."""
    problems: list[str] = []
    claim = mma_settings.OIDC_USERNAME_CLAIM
    if not isinstance(claim, str) or not claim:
        problems.append(f"TOM_MMA['OIDC_USERNAME_CLAIM'] must be a non-empty string, not {claim!r}.")
    groups = mma_settings.OIDC_NEW_USER_GROUPS
    if not isinstance(groups, list | tuple) or not all(isinstance(g, str) and g for g in groups):
        problems.append(f"TOM_MMA['OIDC_NEW_USER_GROUPS'] must be a list of group names, not {groups!r}.")
    for key in ("OIDC_REQUIRE_VERIFIED_EMAIL", "OIDC_ALLOW_STAFF_LOGIN"):
        if not isinstance(getattr(mma_settings, key), bool):
            problems.append(f"TOM_MMA['{key}'] must be True or False.")
    if not isinstance(mma_settings.OIDC_PROVIDER_NAME, str):
        problems.append("TOM_MMA['OIDC_PROVIDER_NAME'] must be a string.")
    return [checks.Error(problem, hint="See docs/oidc.md.", id="tom_mma.E063") for problem in problems]
