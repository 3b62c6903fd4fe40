"""System checks of the data services' settings (``tom_mma.dataservices``, docs/dataservices.md).

* ``tom_mma.E130``: ``TOM_MMA['FINK_API_URL']`` is not an http(s) URL with a host;
* ``tom_mma.E131``: ``TOM_MMA['FINK_API_TIMEOUT_S']`` is not a positive number of seconds.
"""

from __future__ import annotations

import math
from urllib.parse import urlsplit

from django.core import checks

from .conf import DEFAULTS, mma_settings

__all__ = ["check_fink_api"]


@checks.register()
def check_fink_api(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """tom_mma.E130 / E131: the Fink data service's URL and timeout can be used."""
    errors = []
    url = mma_settings.FINK_API_URL
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        errors.append(
            checks.Error(
                f"TOM_MMA['FINK_API_URL'] must be an http(s) URL, not {url!r}",
                hint=f"Fink's public ZTF API is {DEFAULTS['FINK_API_URL']!r} (the default). See docs/dataservices.md.",
                id="tom_mma.E130",
            )
        )
    timeout = mma_settings.FINK_API_TIMEOUT_S
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not math.isfinite(timeout) or timeout <= 0:
        errors.append(
            checks.Error(
                f"TOM_MMA['FINK_API_TIMEOUT_S'] must be a positive number of seconds, not {timeout!r}",
                hint="Without a timeout a query page waits as long as the remote service does. The default is 30.",
                id="tom_mma.E131",
            )
        )
    return errors
