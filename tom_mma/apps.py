"""Django app config of ``tom_mma``."""

from django.apps import AppConfig


class TomMmaConfig(AppConfig):
    """The TOM side of tom-mma."""

    name = "tom_mma"
    verbose_name = "TOM MMA"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import (
            checks,  # noqa: F401  (registers the system checks)
            checks_linking,  # noqa: F401  (registers the linker's settings check)
            linking,
            receivers,
        )
        from .api import routes

        receivers.connect()  # the services' signals become Celery tasks
        linking.connect()  # GW notices are linked to GRB and neutrino events
        routes.register()  # the REST API on the TOM's shared router (tomtoolkit mounts it at api/)

    def include_url_paths(self) -> list:
        """Tomtoolkit integration: the MMA home page under ``/mma/``, the GW event pages under ``/gw/``."""
        from django.urls import include, path

        return [path("mma/", include("tom_mma.urls")), path("gw/", include("tom_mma.gw.urls"))]

    def nav_items(self) -> list[dict]:
        """Tomtoolkit integration: navbar links to the MMA home page and the GW events."""
        return [
            {"partial": "tom_mma/partials/navbar_home.html", "position": "left"},
            {"partial": "tom_mma/gw/partials/navbar_link.html", "position": "left"},
        ]

    def target_detail_tabs(self) -> list[dict]:
        """Tomtoolkit integration: the kilonova score history on the target page."""
        return [
            {
                "partial": "tom_mma/derived/score_history_tab.html",
                "context": "tom_mma.derived.score_history_context",
                "label": "Kilonova score",
            }
        ]

    def data_services(self) -> list[dict]:
        """Tomtoolkit integration: the archive and Fink query forms in the Data Services menu.

        Only ``tom_dataservices`` calls this hook; a TOM without that app gets an empty list, and the
        services' modules (which import it) are never imported.
        """
        from django.apps import apps

        if not apps.is_installed("tom_dataservices"):
            return []
        from .dataservices import SERVICES

        return [dict(service) for service in SERVICES]
