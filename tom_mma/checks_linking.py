"""System check of the multi-messenger linker's settings (``tom_mma.E080``)."""

from __future__ import annotations

from django.core import checks

from .conf import mma_settings

__all__ = ["check_link_windows"]


@checks.register()
def check_link_windows(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """tom_mma.E080: the linker's time windows are valid.

    Each window of ``LINK_GW_WINDOWS_S`` is ``[low, high]`` seconds with ``low <= high``, and
    ``LINK_TRANSIENT_WINDOW_S`` is a non-negative number.
    """
    errors = []

    def error(text: str) -> None:
        errors.append(checks.Error(text, hint="See docs/snews.md (the linker).", id="tom_mma.E080"))

    windows = mma_settings.LINK_GW_WINDOWS_S
    if not isinstance(windows, dict):
        error("TOM_MMA['LINK_GW_WINDOWS_S'] must map sources or messengers to [low, high] seconds")
    else:
        for key, window in windows.items():
            ok = isinstance(window, list | tuple) and len(window) == 2
            ok = ok and all(isinstance(v, int | float) and not isinstance(v, bool) for v in window)
            if not ok or window[0] > window[1]:
                error(f"TOM_MMA['LINK_GW_WINDOWS_S'][{key!r}] must be [low, high] seconds, low <= high, not {window!r}")
    value = mma_settings.LINK_TRANSIENT_WINDOW_S
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        error(f"TOM_MMA['LINK_TRANSIENT_WINDOW_S'] must be a non-negative number of seconds, not {value!r}")
    return errors
