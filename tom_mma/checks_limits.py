"""System checks of the size limits on untrusted bytes.

* ``tom_mma.E120``: ``TOM_MMA['MAX_INFLATED_BYTES']`` is not a positive integer;
* ``tom_mma.E121``: ``TOM_MMA['MAX_CUTOUT_BYTES']`` is not a positive integer.
"""

from __future__ import annotations

from django.core import checks

from .conf import mma_settings

__all__ = ["check_inflate_limit"]


_LIMITS = {
    "MAX_INFLATED_BYTES": ("tom_mma.E120", "The default, 512 * 1024 * 1024, holds the largest sky maps."),
    "MAX_CUTOUT_BYTES": ("tom_mma.E121", "The default, 16 * 1024 * 1024, is far above any survey's cutout."),
}


@checks.register()
def check_inflate_limit(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """tom_mma.E120 / E121: ``MAX_INFLATED_BYTES`` and ``MAX_CUTOUT_BYTES`` are positive integers (bytes)."""
    errors = []
    for key, (check_id, hint) in _LIMITS.items():
        value = getattr(mma_settings, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            errors.append(
                checks.Error(
                    f"TOM_MMA[{key!r}] must be a positive integer (bytes), not {value!r}",
                    hint=f"{hint} See docs/reliable-stream.md.",
                    id=check_id,
                )
            )
    return errors
