"""Test settings: the example TOM's, plus a test app; the database from ``TEST_DATABASE_URL``.

``TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test`` runs the suite on PostgreSQL;
unset, it runs on SQLite (a file, so that subprocesses started by tests can share it).
"""

import json
import os
import tempfile
from pathlib import Path

import dj_database_url

from example_tom.settings import *  # noqa: F403
from example_tom.settings import INSTALLED_APPS, TOM_FACILITY_CLASSES, TOM_MMA

INSTALLED_APPS = INSTALLED_APPS + ["tests.testapp"]

_TMP = Path(os.environ.get("TOM_MMA_TEST_TMP", tempfile.gettempdir())) / f"tom_mma_tests_{os.getpid()}"
if os.environ.get("TOM_MMA_TEST_CHILD"):
    # a subprocess started by a test: use the database and state directory the test gave it
    _TMP = Path(os.environ["TOM_MMA_TEST_TMP"])

_TMP.mkdir(parents=True, exist_ok=True)
# uploaded and stored files (cutouts) in the test's temporary folder, never the example TOM's state directory
MEDIA_ROOT = os.environ.get("TOM_MMA_TEST_MEDIA_ROOT") or str(_TMP / "media")

_db_url = os.environ.get("TEST_DATABASE_URL", "")
if _db_url:
    DATABASES = {"default": dj_database_url.parse(_db_url)}
    DATABASES["default"]["OPTIONS"] = {"server_side_binding": True}
    DATABASES["default"]["TEST"] = {"NAME": os.environ.get("TOM_MMA_TEST_DB_NAME", "test_tom_mma")}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(_TMP / "db.sqlite3"),
            "OPTIONS": {
                "timeout": 30,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
            "TEST": {"NAME": str(_TMP / "test_db.sqlite3")},
        }
    }

if os.environ.get("TOM_MMA_TEST_CHILD"):
    # the child process works in the test database the parent created
    DATABASES["default"]["NAME"] = DATABASES["default"]["TEST"]["NAME"]

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# eager unless a test starts a real worker and gives it (and itself) a Redis broker
CELERY_BROKER_URL = os.environ.get("TOM_MMA_TEST_CELERY_BROKER", "")
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
TOM_MMA_BROKER = {
    "EMBEDDED_STATE_DIR": str(_TMP / "kafka"),
    "RECONNECT_BASE_S": float(os.environ.get("TOM_MMA_TEST_RECONNECT_BASE_S", "0.2")),
    "RECONNECT_MAX_S": 2.0,
    "HANDLER_RETRY_DELAY_S": 0.0,
    "BATCH_SIZE": int(os.environ.get("TOM_MMA_TEST_BATCH_SIZE", "500")),
    "RESULTS_TOPIC": os.environ.get("TOM_MMA_TEST_RESULTS_TOPIC", "tom-mma.derived"),
    "PUBLISH_TIMEOUT_S": 10.0,
}
# a child process gets its stream configuration, and any TOM_MMA settings, from the test that started it
ALERT_STREAMS: list = json.loads(os.environ.get("TOM_MMA_TEST_ALERT_STREAMS", "[]"))
TOM_MMA = {**TOM_MMA, **json.loads(os.environ.get("TOM_MMA_TEST_TOM_MMA", "{}"))}
# test facilities beside the example TOM's (tests/facilities.py)
TOM_FACILITY_CLASSES = TOM_FACILITY_CLASSES + ["tests.facilities.BlockingFacility"]
