"""Django app config of ``tom_mma_broker``."""

from django.apps import AppConfig


class TomMmaBrokerConfig(AppConfig):
    """The MMA alert broker inside the TOM."""

    name = "tom_mma_broker"
    verbose_name = "TOM MMA broker"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import (
            checks,  # noqa: F401  (registers the system checks)
            receivers,
        )
        from .api import routes
        from .snews import checks as snews_checks  # noqa: F401  (registers the SNEWS settings check)

        receivers.connect()
        routes.register()
        # hop's modules import each other: imported here, in the one thread that starts Django, so that a stream's
        # thread and the eager background thread importing hop for the first time at once cannot meet a partly
        # initialised module ("cannot import name 'Auth' from partially initialized module 'hop.auth'", seen once)
        import hop.auth  # noqa: F401
        import hop.io  # noqa: F401  # the REST API on the TOM's shared router (tomtoolkit mounts it at api/)

    def include_url_paths(self) -> list:
        """Tomtoolkit integration: the stream health page under ``/streams/``."""
        from django.urls import include, path

        return [path("streams/", include("tom_mma_broker.urls"))]

    def nav_items(self) -> list[dict]:
        """Tomtoolkit integration: a navbar link to the stream health page."""
        return [{"partial": "tom_mma_broker/partials/navbar_link.html", "position": "left"}]

    def mma_home_panels(self) -> list[dict]:
        """tom_mma integration: the streams' health on the MMA home page (:func:`tom_mma.home.home_panels`)."""
        return [
            {
                "partial": "tom_mma_broker/partials/home_panel.html",
                "context": "tom_mma_broker.views.home_panel_context",
            }
        ]
