"""The Celery app of the example TOM (the only Celery app object: reusable apps use ``@shared_task``).

With no ``CELERY_BROKER_URL`` in the environment, tasks run eagerly in the calling process (the
embedded default); with one (e.g. ``redis://127.0.0.1:6379/0``) they go to ``celery worker``.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_tom.settings")

app = Celery("example_tom")
# The default app in every thread (readstreams runs each stream in a thread of its own, where @shared_task
# resolves to the default app). Celery's Django fixup does this too, but only if no default exists yet.
app.set_default()
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
