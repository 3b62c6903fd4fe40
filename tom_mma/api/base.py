"""What every tom-mma API viewset shares: read-only, authenticated, filtered, paginated; and the schema view.

Used by the API of both apps (``tom_mma_broker.api`` builds on it).
"""

from __future__ import annotations

from typing import Any

from django_filters.rest_framework import DjangoFilterBackend
from rest_framework.filters import OrderingFilter
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.permissions import DjangoModelPermissions, IsAuthenticated
from rest_framework.renderers import JSONOpenAPIRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.viewsets import ReadOnlyModelViewSet, ViewSet

__all__ = [
    "MmaPagination",
    "MmaReadOnlyViewSet",
    "ModelViewPermission",
    "OpenAPISchemaViewSet",
    "register_routes",
    "shared_router",
]

# the routers of tom-mma's apps (each registers on the shared one too): the endpoints the schema describes
_routers: list = []


def shared_router() -> Any:
    """A router on the TOM's shared API router (``tom_common.api_router``), remembered for the schema.

    What is registered on it is served under the TOM's ``api/`` (tomtoolkit's ``tom_common.urls``).
    """
    from tom_common.api_router import SharedAPIRootRouter

    router = SharedAPIRootRouter()
    _routers.append(router)
    return router


_registered: set[str] = set()


def register_routes(app: str, routes: list[tuple[str, Any, str]]) -> bool:
    """Register an app's ``(prefix, viewset, basename)`` routes on the shared router, once per process.

    ``ready()`` may run more than once (tests, ``override_settings``): a second call registers nothing and
    returns False.
    """
    if app in _registered:
        return False
    _registered.add(app)
    router = shared_router()
    for prefix, viewset, basename in routes:
        router.register(prefix, viewset, basename)
    return True


class MmaPagination(LimitOffsetPagination):
    """``?limit=&offset=``: 100 rows a page unless asked, at most 1,000."""

    default_limit = 100
    max_limit = 1000


class ModelViewPermission(DjangoModelPermissions):
    """Reading needs the model's Django view permission (for rows that no Target governs: the archive)."""

    perms_map = {
        **DjangoModelPermissions.perms_map,
        "GET": ["%(app_label)s.view_%(model_name)s"],
        "HEAD": ["%(app_label)s.view_%(model_name)s"],
        "OPTIONS": ["%(app_label)s.view_%(model_name)s"],
    }


class MmaReadOnlyViewSet(ReadOnlyModelViewSet):
    """List and detail, for authenticated users, filtered (django-filter), ordered and paginated.

    ``detail_serializer_class`` (if set) serializes the detail, where the heavy fields (payloads) live.
    """

    permission_classes = [IsAuthenticated]
    filter_backends = [DjangoFilterBackend, OrderingFilter]
    pagination_class = MmaPagination
    ordering_fields: tuple[str, ...] = ()
    detail_serializer_class: Any = None

    @property
    def user(self) -> Any:
        """The requesting user (anonymous while the schema generator inspects the view without a request)."""
        from django.contrib.auth.models import AnonymousUser

        return getattr(self.request, "user", None) or AnonymousUser()

    def get_serializer_class(self) -> Any:
        if self.action == "retrieve" and self.detail_serializer_class is not None:
            return self.detail_serializer_class
        return self.serializer_class


class OpenAPISchemaViewSet(ViewSet):
    """The OpenAPI 3 schema of tom-mma's endpoints (DRF's own schema generation), as JSON."""

    permission_classes = [IsAuthenticated]
    renderer_classes = [JSONOpenAPIRenderer, JSONRenderer]  # the second for Accept: application/json
    schema = None  # not described in itself

    def list(self, request: Any) -> Response:
        from django.urls import include, path
        from rest_framework.schemas.openapi import SchemaGenerator

        import tom_mma

        generator = SchemaGenerator(
            title="tom-mma API",
            version=tom_mma.__version__,
            description="Read-only: GW events, sky-map rankings, derived alerts, transients, the archive.",
            # tom-mma's routes only, where tomtoolkit mounts the shared router
            patterns=[path("api/", include(router.urls)) for router in _routers],
        )
        return Response(generator.get_schema(request=request, public=True))
