"""What a user may see of the broker's rows.

- A broker candidate (and its points and classifications) is tied to the TOM's Target of the same name or
  alias (the TOM side merges the broker's derived alerts into Targets by name and alias, and keeps every
  name as an alias): visible when one such Target is visible to the user
  (:func:`tom_mma.visibility.visible_targets`). A candidate that no Target carries needs the model's view
  permission (``tom_mma_broker.view_candidate``), as do superusers' views of everything.
- The archive and the quarantine hold every message of every topic, whatever Targets it concerns: they need
  the Django view permission of their model (the admin's audience); the API checks it per request.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet
from tom_targets.models import Target, TargetName

from tom_mma.visibility import has_model_view_permission, visible_targets

from .models import Candidate

__all__ = ["visible_candidates", "rows_of_visible_candidates"]


def visible_candidates(user: Any, queryset: QuerySet | None = None) -> QuerySet:
    """The broker candidates ``user`` may see (see the module docstring).

    Parameters
    ----------
    user
        The requesting user.
    queryset
        Candidates to filter (default: all).
    """
    queryset = Candidate.objects.all() if queryset is None else queryset
    if user.is_authenticated and user.is_superuser:
        return queryset
    targets = visible_targets(user).values("pk")
    visible = Q(name__in=Target.objects.filter(pk__in=targets).values("name")) | Q(
        name__in=TargetName.objects.filter(target__in=targets).values("name")
    )
    if has_model_view_permission(user, Candidate):
        visible |= ~Q(name__in=Target.objects.values("name")) & ~Q(name__in=TargetName.objects.values("name"))
    return queryset.filter(visible)


def rows_of_visible_candidates(user: Any, queryset: QuerySet, field: str = "candidate") -> QuerySet:
    """The rows of ``queryset`` (points, classifications) whose candidate ``user`` may see."""
    if user.is_authenticated and user.is_superuser:
        return queryset
    return queryset.filter(**{f"{field}__in": visible_candidates(user).values("pk")})
