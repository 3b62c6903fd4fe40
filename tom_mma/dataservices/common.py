"""What both data services share: errors for the result page, the user's access to a Target they created."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.utils.html import escape
from tom_dataservices.dataservices import QueryServiceError

from tom_mma.targets import give_creator_access
from tom_mma.visibility import visible_targets

__all__ = ["service_error", "after_target_made"]


def service_error(message: str) -> QueryServiceError:
    """A :class:`QueryServiceError` whose text is safe in the result page.

    tom_dataservices puts the error's text into the page unescaped (``query_feedback|safe``), and a remote
    service's answer is untrusted: escape it.
    """
    return QueryServiceError(escape(message))


def after_target_made(target: Any, created: bool, request: Any = None) -> None:
    """The requester's access to a Target made from a result, and a word if they may not see it."""
    user = getattr(request, "user", None)
    if created:
        give_creator_access(target, user)
    elif request is not None and not visible_targets(user).filter(pk=target.pk).exists():
        messages.warning(request, f"The result was merged into an existing Target you may not view ({target.pk}).")
