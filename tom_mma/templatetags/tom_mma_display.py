"""Template filters of :mod:`tom_mma.display`: ``{{ value|mag:error }}`` and ``{{ request|request_status }}``.

Load with ``{% load tom_mma_display %}``. Both return plain text, autoescaped like any value.
"""

from __future__ import annotations

from django import template

from tom_mma.display import RequestStatus, format_magnitude, format_magnitude_error, status_of

__all__ = ["mag", "mag_error", "request_status"]

register = template.Library()


@register.filter
def mag(value: float | None, error: float | None = None) -> str:
    """A magnitude to 0.01 mag or to its error's digits (:func:`tom_mma.display.format_magnitude`)."""
    return format_magnitude(value, error)


@register.filter
def mag_error(value: float | None) -> str:
    """A magnitude's error to the decimals of its magnitude (:func:`tom_mma.display.format_magnitude_error`)."""
    return format_magnitude_error(value)


@register.filter
def request_status(obj: object) -> RequestStatus:
    """The one status of a request (record, trigger or GW event link); ``.label`` and ``.colour`` for badges."""
    return status_of(obj)
