"""Settings of the example TOM.

Everything that differs between a laptop and production comes from the environment:

==========================  ======================================================================
``DATABASE_URL``            database (default: SQLite in ``db.sqlite3`` beside ``manage.py``)
``CELERY_BROKER_URL``       Celery broker, e.g. ``redis://127.0.0.1:6379/0`` (default: tasks run eagerly)
``TOM_MMA_KAFKA_URL``       Kafka/Hopskotch, e.g. ``kafka://kafka.scimma.org`` (default: the embedded broker)
``HOPSKOTCH_USERNAME``      SCRAM credentials for Hopskotch (default: none, no authentication)
``HOPSKOTCH_PASSWORD``
``DJANGO_SECRET_KEY``       (default: a random key kept in ``.tom_mma/secret_key``)
``DJANGO_DEBUG``            ``1``/``0`` (default 0)
``DJANGO_ALLOWED_HOSTS``    comma-separated (default: localhost)
==========================  ======================================================================
"""

import os
import secrets
import tempfile
from pathlib import Path

import dj_database_url
from tom_common.default_settings import *  # noqa: F403

from tom_mma.oidc.environment import oidc_settings

BASE_DIR = Path(__file__).resolve().parent.parent
STATE_DIR = Path(os.environ.get("TOM_MMA_STATE_DIR", BASE_DIR / ".tom_mma"))


def _secret_key() -> str:
    key = os.environ.get("DJANGO_SECRET_KEY")
    if key:
        return key
    path = STATE_DIR / "secret_key"
    if not path.exists():
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
# Off by default: with DEBUG on, Django logs every SQL statement with its parameters (alert
# payloads included), which makes ingest several times slower and grows memory.
DEBUG = os.environ.get("DJANGO_DEBUG", "0") == "1"
ALLOWED_HOSTS = [h for h in os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1").split(",") if h]

TOM_NAME = "tom-mma example TOM"

INSTALLED_APPS = TOMTOOLKIT_INSTALLED_APPS + [
    "tom_alerts",  # tomtoolkit 3.1's tom_setup leaves it out; broker classes need it
    "tom_alertstreams",
    "tom_mma",
    "tom_mma_broker",
]

SITE_ID = 1
MIDDLEWARE = TOMTOOLKIT_MIDDLEWARE + []
ROOT_URLCONF = "example_tom.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "example_tom" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.debug",
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]
CRISPY_TEMPLATE_PACK = "bootstrap5"
WSGI_APPLICATION = "example_tom.wsgi.application"

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"), conn_max_age=60
    )
}
if DATABASES["default"]["ENGINE"].endswith("postgresql"):
    # bind parameters on the server: alert payloads travel as binary, not as escaped SQL literals
    DATABASES["default"].setdefault("OPTIONS", {})["server_side_binding"] = True
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # several processes (readstreams, a worker, the web server) share the file
    # WAL lets readers (the web server) work while a stream writes
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/"
AUTHENTICATION_BACKENDS = TOMTOOLKIT_AUTHENTICATION_BACKENDS + []  # + tom_mma.auth.OIDCBackend: see OIDC below

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
FORMAT_MODULE_PATH = ["tom_base.formats"]

STATIC_URL = "/static/"
STATIC_ROOT = STATE_DIR / "static"
# Bootstrap is served from the TOM itself (tomtoolkit links a CDN by default): the TOM then looks
# right on a network that cannot reach the CDN (an observatory, this project's CI machine).
STATICFILES_DIRS: list = [Path(__file__).resolve().parent / "static"]
BOOTSTRAP5 = {
    "css_url": {"url": f"{STATIC_URL}vendor/bootstrap-5.3.8/bootstrap.min.css"},
    "javascript_url": {"url": f"{STATIC_URL}vendor/bootstrap-5.3.8/bootstrap.bundle.min.js"},
}
MEDIA_ROOT = STATE_DIR / "media"
MEDIA_URL = "/data/"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"timestamped": {"format": "[{asctime}] {levelname} {name}: {message}", "style": "{"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "timestamped"}},
    "loggers": {"": {"handlers": ["console"], "level": os.environ.get("TOM_MMA_LOG_LEVEL", "INFO")}},
}

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
        "LOCATION": os.path.join(tempfile.gettempdir(), "tom_mma_cache"),
    }
}
TASKS = {"default": {"BACKEND": "django_tasks.backends.immediate.ImmediateBackend"}}

# --- Celery: eager unless a broker is given -------------------------------------------------
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "")
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# the sweep: classifications whose enqueue was lost, derived alerts not sent while Kafka was down
CELERY_BEAT_SCHEDULE = {
    "sweep": {"task": "tom_mma_broker.tasks.sweep", "schedule": 30.0},
    # observation triggers, rankings and rule evaluations whose task was lost
    "tom_mma-sweep": {"task": "tom_mma.tasks.sweep", "schedule": 60.0},
    # observation requests of retracted events whose cancellation gave up (facility down) or was lost
    "tom_mma-sweep-cancellations": {"task": "tom_mma.gw.tasks.sweep_cancellations", "schedule": 600.0},
    # observation requests' statuses (pending, scheduled, completed) from their facilities
    "tom_mma-update-observation-statuses": {"task": "tom_mma.tasks.update_observation_statuses", "schedule": 120.0},
}

# --- astropy: no downloads at run time --------------------------------------------------------
# The TOM's visibility plots convert times to UT1; astropy then downloads the IERS-A table when the one
# it ships is more than 30 days old, and fails offline. A TOM that cannot reach the IERS servers (this
# machine, many observatory networks) uses the table astropy-iers-data ships (good to ~1 s of UT1 for a
# year ahead, plenty for airmass plots). ASTROPY_IERS_AUTO_DOWNLOAD=1 lets astropy fetch fresh tables.
if os.environ.get("ASTROPY_IERS_AUTO_DOWNLOAD", "") != "1":
    from astropy.utils import iers

    iers.conf.auto_download = False
    iers.conf.auto_max_age = None  # use its predictions, however old, rather than fail

# --- TOM Toolkit ----------------------------------------------------------------------------
TARGET_TYPE = "SIDEREAL"
MATCH_MANAGERS: dict = {}
FACILITIES: dict = {}
DATA_PRODUCT_TYPES = {
    "photometry": ("photometry", "Photometry"),
    "fits_file": ("fits_file", "FITS File"),
    "spectroscopy": ("spectroscopy", "Spectroscopy"),
    "image_file": ("image_file", "Image File"),
}
DATA_PROCESSORS = {
    "photometry": "tom_dataproducts.processors.photometry_processor.PhotometryProcessor",
    "spectroscopy": "tom_dataproducts.processors.spectroscopy_processor.SpectroscopyProcessor",
}
TOM_FACILITY_CLASSES = [
    # runs on this machine: accepts, schedules and completes requests over time (LCO etc. by settings)
    "tom_mma.facilities.simulated.SimulatedFacility",
]
TOM_ALERT_CLASSES = ["tom_mma.alerts.DerivedAlertBroker"]
EXTRA_FIELDS: list = []
GENERAL_SEARCH_FUNCTIONS: dict = {}
SELECTION_EXTRA_FIELDS: list = []
AUTH_STRATEGY = "READ_ONLY"
OPEN_URLS: list = []
TARGET_PERMISSIONS_ONLY = True
TARGET_DEFAULT_PERMISSION = "PRIVATE"
TARGET_LIST_COLUMNS = ["name", "type", "observations", "saved_data"]
HOOKS = {
    "target_post_save": "tom_common.hooks.target_post_save",
    "observation_change_state": "tom_common.hooks.observation_change_state",
    "data_product_post_upload": "tom_dataproducts.hooks.data_product_post_upload",
    "data_product_post_save": "tom_dataproducts.hooks.data_product_post_save",
    "multiple_data_products_post_save": "tom_dataproducts.hooks.multiple_data_products_post_save",
}
AUTO_THUMBNAILS = False
THUMBNAIL_MAX_SIZE = (0, 0)
THUMBNAIL_DEFAULT_SIZE = (200, 200)
HINTS_ENABLED = False
HINT_LEVEL = 20
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "tom_common.accounts.api_auth.TomTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": [],
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 100,
}
PLOTLY_THEME = "plotly_white"
SHOW_PAGINATION_INFO = True

# --- tom-mma ---------------------------------------------------------------------------------
KAFKA_URL = os.environ.get("TOM_MMA_KAFKA_URL", "embedded")

ALERT_STREAMS = [
    {
        "ACTIVE": True,
        "NAME": "tom_mma_broker.streams.ReliableHopskotchAlertStream",
        "OPTIONS": {
            "URL": KAFKA_URL,
            "USERNAME": os.environ.get("HOPSKOTCH_USERNAME", ""),
            "PASSWORD": os.environ.get("HOPSKOTCH_PASSWORD", ""),
            "GROUP_ID": os.environ.get("TOM_MMA_GROUP_ID", "tom-mma-example"),
            # several readstreams processes share the topics' partitions (docs/running.md)
            "SHARE_PARTITIONS": os.environ.get("TOM_MMA_SHARE_PARTITIONS", "") == "1",
            "START_POSITION": "EARLIEST",
            "TOPIC_HANDLERS": {
                # the GW170817 replay (``replaygw170817``, ``mmademo``) on the embedded broker
                "tom-mma.gw170817.gwalert": "tom_mma.handlers.lvk.igwn_gwalert_handler",
                "tom-mma.gw170817.photometry": "tom_mma_broker.handlers.photometry_handler",
                # GRB 170817A (Fermi GBM, JSON) for the multi-messenger linker
                "tom-mma.gw170817.fermi-gbm": "tom_mma.handlers.gcn.fermi_gbm_handler",
                "tom-mma.gw170817.derived": "tom_mma.handlers.derived.derived_alert_handler",
                # live LVK notices on Hopskotch (a topic the broker lacks is checked for again later)
                "igwn.gwalert": "tom_mma.handlers.lvk.igwn_gwalert_handler",
                # optical alerts (docs/optical.md): Fink's livestream form and direct ZTF / Rubin packets;
                # replay files with ``replayalerts FILES --topic tom-mma.demo.ztf`` (add --publish for the broker)
                "tom-mma.demo.fink-ztf": "tom_mma.handlers.optical.fink_ztf_handler",
                "tom-mma.demo.fink-lsst": "tom_mma.handlers.optical.fink_lsst_handler",
                "tom-mma.demo.ztf": "tom_mma.handlers.optical.ztf_handler",
                "tom-mma.demo.lsst": "tom_mma.handlers.optical.lsst_handler",
                # supernova neutrinos (docs/snews.md): the SNEWS decider's alerts, GCN's SNEWS notices and
                # Super-Kamiokande's, as neutrino events; replay files with ``replayalerts FILES --topic ...``
                "tom-mma.snews.alert": "tom_mma.handlers.gcn.snews_alert_handler",
                "gcn.notices.snews2.alert": "tom_mma.handlers.gcn.gcn_snews_handler",
                "gcn.notices.superk.sn_alert": "tom_mma.handlers.gcn.superk_sn_handler",
                # None: archive only
                "tom-mma.demo.alerts": None,
            },
        },
    },
]

TOM_MMA = {
    "ACCEPT_MOCK_EVENTS": True,  # a place to try things: take LVK mock (MS...) events
}
TOM_MMA_BROKER = {
    "EMBEDDED_STATE_DIR": str(STATE_DIR / "kafka"),
    "KAFKA_URL": KAFKA_URL,
    "KAFKA_USERNAME": os.environ.get("HOPSKOTCH_USERNAME", ""),
    "KAFKA_PASSWORD": os.environ.get("HOPSKOTCH_PASSWORD", ""),
    "RESULTS_TOPIC": "tom-mma.gw170817.derived",
    "EMBEDDED_TOPICS": ["tom-mma.gw170817.derived"],
}

# --- OIDC login (mozilla-django-oidc): on only when OIDC_RP_CLIENT_ID is set --------------------
# docs/oidc.md. Everything comes from the environment, the client secret above all; checks
# tom_mma.E060-E069 name what is missing. Staff and superuser rights only by the allow-lists.
_oidc = oidc_settings(os.environ)
if _oidc:
    TOM_MMA.update(_oidc.pop("TOM_MMA"))
    # the password login (ModelBackend, allauth) stays first: the break-glass administrator's way in
    AUTHENTICATION_BACKENDS = [*AUTHENTICATION_BACKENDS, *_oidc.pop("AUTHENTICATION_BACKENDS")]
    globals().update(_oidc)
