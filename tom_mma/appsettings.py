"""Lazy, namespaced app settings shared by ``tom_mma`` and ``tom_mma_broker``.

Each app reads its settings through one object over one dict in the TOM's settings
(``TOM_MMA``, ``TOM_MMA_BROKER``), with defaults. Nothing is read at import time: every
attribute access looks the value up again, so ``override_settings`` works in tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

__all__ = ["AppSettings"]


class AppSettings:
    """Read ``settings.<name>[KEY]`` with a fallback to ``defaults[KEY]``.

    Parameters
    ----------
    name : str
        The name of the dict in the Django settings, e.g. ``"TOM_MMA"``.
    defaults : Mapping
        Every key this app knows, with its default value.

    Examples
    --------
    >>> s = AppSettings("TOM_MMA_DOCTEST", {"FLOOR": 0.5})
    >>> s.FLOOR
    0.5
    """

    def __init__(self, name: str, defaults: Mapping[str, Any]):
        self._name = name
        self._defaults = dict(defaults)

    @property
    def user_settings(self) -> Mapping[str, Any]:
        """The dict the TOM set, or an empty one."""
        value = getattr(settings, self._name, None) or {}
        if not isinstance(value, Mapping):
            raise ImproperlyConfigured(f"settings.{self._name} must be a dict, not {type(value).__name__}")
        return value

    def unknown_keys(self) -> list[str]:
        """Keys the TOM set that this app does not know (a likely typo)."""
        return sorted(set(self.user_settings) - set(self._defaults))

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_") or key not in self._defaults:
            raise AttributeError(f"{self._name} has no setting {key!r}")
        return self.user_settings.get(key, self._defaults[key])

    def raw(self, key: str) -> Any:
        """The setting's value (as :meth:`__getattr__`, for a key held in a variable)."""
        if key not in self._defaults:
            raise AttributeError(f"{self._name} has no setting {key!r}")
        return self.user_settings.get(key, self._defaults[key])
