"""A TOM with ``tom_mma`` alone (no ``tom_mma_broker``): it reads derived alerts and LVK notices from a
broker run elsewhere. The test settings otherwise; the database is a file of its own (``TOM_MMA_ONLY_DB``)."""

import os

from tests.settings import *  # noqa: F403
from tests.settings import INSTALLED_APPS

INSTALLED_APPS = [app for app in INSTALLED_APPS if app not in ("tom_mma_broker", "tests.testapp")]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["TOM_MMA_ONLY_DB"]}}
CELERY_BEAT_SCHEDULE: dict = {}
ALERT_STREAMS = [
    {
        "ACTIVE": True,
        # tom-alertstreams' own stream: the reliable one lives in tom_mma_broker
        "NAME": "tom_alertstreams.alertstreams.hopskotch.HopskotchAlertStream",
        "OPTIONS": {
            "URL": "kafka://kafka.scimma.org",
            "USERNAME": "",
            "PASSWORD": "",
            "TOPIC_HANDLERS": {
                "igwn.gwalert": "tom_mma.handlers.lvk.igwn_gwalert_handler",
                "tom-mma.derived": "tom_mma.handlers.derived.derived_alert_handler",
            },
        },
    }
]
