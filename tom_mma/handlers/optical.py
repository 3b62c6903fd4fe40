"""``TOPIC_HANDLERS`` handlers of optical alerts: Fink's livestream (ZTF, Rubin) and ZTF and Rubin packets.

In the TOM's ``ALERT_STREAMS`` (the example TOM routes its four demo topics so)::

    "TOPIC_HANDLERS": {
        "fink_kn_candidates_ztf": "tom_mma.handlers.optical.fink_ztf_handler",    # Fink livestream, ZTF
        "fink_early_sn_candidates_lsst": "tom_mma.handlers.optical.fink_lsst_handler",  # Fink livestream, Rubin
        "ztf_public": "tom_mma.handlers.optical.ztf_handler",                      # ZTF packets
        "lsst-alerts": "tom_mma.handlers.optical.lsst_handler",                   # Rubin packets
    }

Each handler reads the message (a decoded Avro record, or raw bytes in Fink's wire form or a Confluent
frame, see :mod:`tom_mma.optical.packets`), normalises each alert into an
:class:`~tom_mma.optical.alerts.OpticalAlert` and calls one service,
:func:`tom_mma.optical.service.ingest_optical_alerts`. Bad input raises
:class:`~tom_mma.optical.packets.AlertFormatError` (permanent): the stream quarantines the message with
the reason. A message of the wrong survey for its handler is bad input too.

Each handler also takes many messages at once (its ``batch`` attribute, which the reliable stream's
ingest uses for a run of consecutive messages of its topic): the alerts of the whole run go through
:func:`~tom_mma.optical.service.ingest_optical_alerts` together; a message that cannot be read is
returned as its error (quarantined with the reason) and the others are handled.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tom_mma.batching import batch_of
from tom_mma.conf import mma_settings
from tom_mma.optical.alerts import OpticalAlert, normalise
from tom_mma.optical.packets import AlertFormatError, decode_payload
from tom_mma.optical.service import OpticalIngestResult, check_alert, ingest_optical_alerts

__all__ = [
    "optical_alert_handler",
    "fink_ztf_handler",
    "fink_lsst_handler",
    "ztf_handler",
    "lsst_handler",
    "alert_records",
]

logger = logging.getLogger(__name__)


def alert_records(alert: Any, metadata: Any = None) -> list[dict]:
    """The alert records of a message: a hop ``AvroBlob`` (one dict or a list), a ``Blob``/bytes, or a dict.

    Raw bytes are read with the message's Kafka key (Fink's writer schema) when it has one.

    Raises
    ------
    AlertFormatError
        If the message holds no readable alert.
    """
    content = getattr(alert, "content", alert)
    if isinstance(content, Mapping):
        return [dict(content)]
    if isinstance(content, list):
        if not all(isinstance(r, Mapping) for r in content) or not content:
            raise AlertFormatError("the message's Avro content is not a list of alert records")
        return list(content)
    if isinstance(content, bytes | bytearray | memoryview):
        key = getattr(metadata, "key", None)
        return decode_payload(bytes(content), key=key, rubin_version=mma_settings.RUBIN_SCHEMA_VERSION)
    raise AlertFormatError(f"cannot read an optical alert from a message of type {type(content).__name__}")


def _parse(alert: Any, metadata: Any, survey: str | None) -> list[OpticalAlert]:
    alerts = [normalise(record) for record in alert_records(alert, metadata)]  # all parsed before any is stored
    if survey is not None:
        wrong = [a.name for a in alerts if a.survey != survey]
        if wrong:
            raise AlertFormatError(f"a {survey} topic got alerts of another survey: {', '.join(wrong[:5])}")
    for a in alerts:
        check_alert(a)
    return alerts


def _handle(alert: Any, metadata: Any, survey: str | None) -> list[OpticalIngestResult]:
    return ingest_optical_alerts(_parse(alert, metadata, survey))


def _ingest_messages(per_message: list[list[OpticalAlert]]) -> list[list[OpticalIngestResult]]:
    """The alerts of many messages through one :func:`~tom_mma.optical.service.ingest_optical_alerts`.

    One list of results per message. An error while writing is raised: the stream then handles the run's
    messages one by one (see :mod:`tom_mma_broker.ingest`).
    """
    results = iter(ingest_optical_alerts([a for alerts in per_message for a in alerts]))
    return [[next(results) for _ in alerts] for alerts in per_message]


def _batched(survey: str | None) -> Callable[[Sequence[tuple[Any, Any]]], list[Any]]:
    """A handler's ``batch``: a message that cannot be read is returned as its error (nothing of it written)."""
    return batch_of(lambda alert, metadata: _parse(alert, metadata, survey), _ingest_messages)


def optical_alert_handler(alert: Any, metadata: Any = None) -> list[OpticalIngestResult]:
    """Handle ZTF or Rubin alerts in any of the supported forms (the survey is told by the fields)."""
    return _handle(alert, metadata, None)


def fink_ztf_handler(alert: Any, metadata: Any = None) -> list[OpticalIngestResult]:
    """Handle Fink's ZTF livestream (schemaless Avro, the writer schema as the Kafka key) or its files."""
    return _handle(alert, metadata, "ZTF")


def fink_lsst_handler(alert: Any, metadata: Any = None) -> list[OpticalIngestResult]:
    """Handle Fink's Rubin (LSST) livestream or its data-transfer files."""
    return _handle(alert, metadata, "LSST")


def ztf_handler(alert: Any, metadata: Any = None) -> list[OpticalIngestResult]:
    """Handle ZTF alert packets (Avro container files, schemas 3.x and 4.x)."""
    return _handle(alert, metadata, "ZTF")


def lsst_handler(alert: Any, metadata: Any = None) -> list[OpticalIngestResult]:
    """Handle Rubin alert packets (Avro files, Confluent wire frames, or schemaless with a known schema)."""
    return _handle(alert, metadata, "LSST")


# the stream's ingest hands a run of consecutive messages to a handler's ``batch`` at once (tom_mma_broker.ingest)
optical_alert_handler.batch = _batched(None)  # type: ignore[attr-defined]
fink_ztf_handler.batch = _batched("ZTF")  # type: ignore[attr-defined]
fink_lsst_handler.batch = _batched("LSST")  # type: ignore[attr-defined]
ztf_handler.batch = _batched("ZTF")  # type: ignore[attr-defined]
lsst_handler.batch = _batched("LSST")  # type: ignore[attr-defined]
