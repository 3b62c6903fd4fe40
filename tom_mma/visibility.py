"""What a user may see of ``tom_mma``'s rows: the TOM's Target permissions, applied to the rows tied to Targets.

The rule, for the REST API and any page that lists these rows:

- a row tied to a Target (a ranked candidate, a derived alert, an observation trigger) is visible when its
  Target is, as ``tom_targets.permissions.targets_for_user`` decides (guardian's object permissions on
  private Targets, every authenticated user on public ones, superusers on all);
- a row whose Target is gone (a derived alert keeps ``target = NULL``) needs the model's view permission
  (``tom_mma.view_derivedalertrecord``: the admin's audience);
- events (GW, GRB, X-ray, neutrino), their notices, sky maps and links are public science: every
  authenticated user sees them.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet
from tom_targets.models import Target
from tom_targets.permissions import targets_for_user

__all__ = ["visible_targets", "rows_of_visible_targets", "has_model_view_permission"]


def visible_targets(user: Any) -> QuerySet:
    """The Targets ``user`` may view (``tom_targets.permissions.targets_for_user``)."""
    return targets_for_user(user, Target.objects.all(), "view_target")


def has_model_view_permission(user: Any, model: type) -> bool:
    """Whether ``user`` has the Django view permission on every row of ``model``."""
    return bool(user.is_authenticated and user.has_perm(f"{model._meta.app_label}.view_{model._meta.model_name}"))


def rows_of_visible_targets(user: Any, queryset: QuerySet, field: str = "target") -> QuerySet:
    """The rows of ``queryset`` whose Target (``field``) ``user`` may view.

    Parameters
    ----------
    user
        The requesting user (anonymous users see the rows of OPEN Targets only).
    queryset
        Rows with a foreign key to the TOM's Target model.
    field
        The name of that foreign key.

    Returns
    -------
    QuerySet
        ``queryset`` filtered; rows whose Target is NULL are kept only for users with the model's view
        permission.
    """
    if user.is_authenticated and user.is_superuser:
        return queryset
    visible = Q(**{f"{field}__in": visible_targets(user).values("pk")})
    if queryset.model._meta.get_field(field).null and has_model_view_permission(user, queryset.model):
        visible |= Q(**{f"{field}__isnull": True})
    return queryset.filter(visible)
