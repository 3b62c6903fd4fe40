"""System checks of ``tom_mma`` (ids ``tom_mma.E0xx`` / ``tom_mma.W0xx``).

- ``tom_mma.W001``: an unknown key in ``TOM_MMA``.
- ``tom_mma.E040``-``E045``: the derived-alert flow (``checks_derived``).
- ``tom_mma.E060``-``E069``: the OIDC login (``checks_oidc``).
- ``tom_mma.E070``: background work would be lost: no Celery broker and eager mode off.
- ``tom_mma.E120``, ``E121``: ``MAX_INFLATED_BYTES`` or ``MAX_CUTOUT_BYTES`` is not a positive integer
  (``checks_limits``).
- ``tom_mma.E130``, ``E131``: the Fink data service's ``FINK_API_URL`` or ``FINK_API_TIMEOUT_S`` is unusable
  (``checks_dataservices``).
"""

from __future__ import annotations

from django.conf import settings
from django.core import checks

from . import (
    checks_dataservices,  # noqa: F401  (registers the data services' checks)
    checks_derived,  # noqa: F401  (registers the derived-alert checks)
    checks_limits,  # noqa: F401  (registers the decompression limit's check)
    checks_oidc,  # noqa: F401  (registers the OIDC login checks)
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
