"""System checks of the optical-alert settings (``TOM_MMA['OPTICAL_*']``, ``RUBIN_SCHEMA_VERSION``).

* ``tom_mma.E090``: ``OPTICAL_CUTOUTS_KEPT`` is not None or an integer >= 0;
* ``tom_mma.E091``: ``OPTICAL_MATCH_RADIUS_ARCSEC`` or ``OPTICAL_GW_WINDOW_DAYS`` is not a number >= 0;
* ``tom_mma.E092``: ``OPTICAL_TARGET_GROUPS`` is not None or a list of group names;
* ``tom_mma.W090``: ``RUBIN_SCHEMA_VERSION`` names a schema that the installed lsst-alert-packet does not ship
  (or the package is missing: Rubin alerts then cannot be read).
"""

from __future__ import annotations

from django.core import checks

from .conf import mma_settings

__all__ = ["check_optical_settings"]


@checks.register()
def check_optical_settings(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """The optical settings have usable values."""
    errors: list[checks.CheckMessage] = []
    kept = mma_settings.OPTICAL_CUTOUTS_KEPT
    if kept is not None and (not isinstance(kept, int) or isinstance(kept, bool) or kept < 0):
        errors.append(checks.Error(f"OPTICAL_CUTOUTS_KEPT must be None or an integer >= 0, not {kept!r}",
                                   hint="0 keeps no cutouts, None keeps every alert's", id="tom_mma.E090"))  # fmt: skip
    for key in ("OPTICAL_MATCH_RADIUS_ARCSEC", "OPTICAL_GW_WINDOW_DAYS"):
        value = getattr(mma_settings, key)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            errors.append(checks.Error(f"{key} must be a number >= 0, not {value!r}", id="tom_mma.E091"))
    groups = mma_settings.OPTICAL_TARGET_GROUPS
    if groups is not None and (isinstance(groups, str) or not all(isinstance(g, str) for g in groups)):
        errors.append(checks.Error("OPTICAL_TARGET_GROUPS must be None or a list of group names",
                                   hint='e.g. ["Public"]', id="tom_mma.E092"))  # fmt: skip
    if _reads_rubin():
        from .optical.packets import AlertFormatError, rubin_schema

        try:
            rubin_schema(mma_settings.RUBIN_SCHEMA_VERSION)
        except AlertFormatError as exc:
            errors.append(checks.Warning(str(exc), hint="install tom-mma[optical] or name a shipped version",
                                         id="tom_mma.W090"))  # fmt: skip
    return errors


def _reads_rubin() -> bool:
    """Whether the TOM means to read Rubin alerts: a Rubin handler routed, or a Rubin schema chosen.

    A TOM that takes no Rubin alerts needs no Rubin schemas (``tom-mma[optical]``), and gets no warning.
    """
    from django.conf import settings

    if "RUBIN_SCHEMA_VERSION" in mma_settings.user_settings:
        return True
    rubin_handlers = ("fink_lsst_handler", "lsst_handler", "optical_alert_handler")
    for config in getattr(settings, "ALERT_STREAMS", []) or []:
        for path in (config.get("OPTIONS", {}).get("TOPIC_HANDLERS") or {}).values():
            if isinstance(path, str) and path.rsplit(".", 1)[-1] in rubin_handlers:
                return True
    return False
