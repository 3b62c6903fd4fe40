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
        routes.register()  # the REST API on the TOM's shared router (tomtoolkit mounts it at api/)
