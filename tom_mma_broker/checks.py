"""System checks of ``tom_mma_broker`` (ids ``tom_mma_broker.E0xx`` / ``W0xx``)."""

from __future__ import annotations

from django.conf import settings
from django.core import checks
from django.utils.module_loading import import_string

from .conf import broker_settings

RELIABLE_STREAM = "tom_mma_broker.streams.ReliableHopskotchAlertStream"


@checks.register()
def check_settings_keys(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """tom_mma_broker.W001: an unknown key in ``TOM_MMA_BROKER`` is probably a typo."""
    unknown = broker_settings.unknown_keys()
    if unknown:
        return [
            checks.Warning(
                f"TOM_MMA_BROKER has unknown keys: {', '.join(unknown)}",
                hint="See docs/settings.md for the keys tom_mma_broker reads.",
                id="tom_mma_broker.W001",
            )
        ]
    return []


@checks.register()
def check_topic_handlers(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """tom_mma_broker.E001: every handler path of a reliable stream imports and is callable."""
    errors: list[checks.CheckMessage] = []
    for config in getattr(settings, "ALERT_STREAMS", []) or []:
        if config.get("NAME") != RELIABLE_STREAM or not config.get("ACTIVE", True):
            continue
        for topic, path in (config.get("OPTIONS", {}).get("TOPIC_HANDLERS") or {}).items():
            if path in (None, ""):
                continue
            try:
                handler = import_string(path)
            except ImportError as exc:
                errors.append(
                    checks.Error(
                        f"handler {path!r} for topic {topic!r} does not import: {exc}",
                        hint="Fix TOPIC_HANDLERS in ALERT_STREAMS.",
                        id="tom_mma_broker.E001",
                    )
                )
                continue
            if not callable(handler):
                errors.append(
                    checks.Error(
                        f"handler {path!r} for topic {topic!r} is not callable",
                        hint="A handler is handler(alert, metadata).",
                        id="tom_mma_broker.E001",
                    )
                )
    return errors


@checks.register()
def check_batching(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """tom_mma_broker.E002: batch size and handler attempts are positive integers."""
    errors = []
    for key in ("BATCH_SIZE", "MAX_HANDLER_ATTEMPTS"):
        value = broker_settings.raw(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            errors.append(
                checks.Error(
                    f"TOM_MMA_BROKER[{key!r}] must be a positive integer, not {value!r}",
                    id="tom_mma_broker.E002",
                )
            )
    return errors


@checks.register()
def check_message_size(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """tom_mma_broker.E030: ``MAX_MESSAGE_BYTES`` is a positive integer (bytes)."""
    value = broker_settings.MAX_MESSAGE_BYTES
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return [
            checks.Error(
                f"TOM_MMA_BROKER['MAX_MESSAGE_BYTES'] must be a positive integer (bytes), not {value!r}",
                hint="The default, 16 * 1024 * 1024, is far above any alert's size; see docs/reliable-stream.md.",
                id="tom_mma_broker.E030",
            )
        ]
    return []


@checks.register()
def check_publishing(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """tom_mma_broker.E003/E004: publishing needs a topic, a broker, and credentials for a remote broker."""
    from urllib.parse import urlparse

    if not broker_settings.PUBLISH_ENABLED:
        return []
    errors = []
    if not broker_settings.RESULTS_TOPIC:
        errors.append(checks.Error("PUBLISH_ENABLED but no RESULTS_TOPIC", hint="Set TOM_MMA_BROKER['RESULTS_TOPIC'].",
                                   id="tom_mma_broker.E003"))  # fmt: skip
    url = broker_settings.KAFKA_URL or "embedded"
    if url != "embedded":
        host = urlparse(url).hostname or ""
        if host.endswith("scimma.org") and not broker_settings.KAFKA_USERNAME:
            errors.append(checks.Error(
                f"publishing to {host} needs SCRAM credentials",
                hint="Set TOM_MMA_BROKER['KAFKA_USERNAME'] and ['KAFKA_PASSWORD'] from the environment.",
                id="tom_mma_broker.E003"))  # fmt: skip
    floor = broker_settings.PUBLISH_FLOOR
    if floor is not None and (not isinstance(floor, int | float) or not 0 <= floor <= 1):
        errors.append(checks.Error(f"PUBLISH_FLOOR must be a score in [0, 1] or None, not {floor!r}",
                                   id="tom_mma_broker.E004"))  # fmt: skip
    return errors


@checks.register()
def check_classifier_artifact(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """tom_mma_broker.E005: the classifier artifact exists and its checksum matches."""
    from .classifier.model import verify_checksum

    ok, message = verify_checksum(broker_settings.CLASSIFIER_ARTIFACT)
    if ok:
        return []
    hint = (
        "tom-mma ships the artifact: reinstall it, or train one (./manage.py trainclassifier --out DIR) "
        "and set TOM_MMA_BROKER['CLASSIFIER_ARTIFACT'] to the .skops file it prints."
    )
    return [checks.Error(message, hint=hint, id="tom_mma_broker.E005")]


@checks.register()
def check_health_heartbeat(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """tom_mma_broker.E040: ``HEALTH_HEARTBEAT_S`` is a positive number of seconds."""
    value = broker_settings.HEALTH_HEARTBEAT_S
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        return [
            checks.Error(
                f"TOM_MMA_BROKER['HEALTH_HEARTBEAT_S'] must be a positive number of seconds, not {value!r}",
                hint="How often a reading stream notes its heartbeat and lag (default 30.0).",
                id="tom_mma_broker.E040",
            )
        ]
    return []
