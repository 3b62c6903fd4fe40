"""System checks of ``tom_mma`` (ids ``tom_mma.E0xx`` / ``tom_mma.W0xx``)."""

from __future__ import annotations

from django.core import checks

from . import checks_derived  # noqa: F401  (registers the derived-alert checks)
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
