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


def _handle_batch(messages: Sequence[tuple[Any, Any]], survey: str | None) -> list[Any]:
    """The messages' alerts handled at once (:func:`~tom_mma.optical.service.ingest_optical_alerts`).

    One item per message: its results, or the exception it raised when read (nothing of it is written);
    the stream's ingest quarantines that message and keeps the others (see
    :mod:`tom_mma_broker.ingest`). An error while writing is raised: the stream then handles the batch's
    messages one by one.
    """
    parsed: list[list[OpticalAlert] | Exception] = []
    for alert, metadata in messages:
        try:
            parsed.append(_parse(alert, metadata, survey))
        except Exception as exc:  # noqa: BLE001 - the message's own failure, returned to the stream for it
            parsed.append(exc)
    flat = [a for alerts in parsed if not isinstance(alerts, Exception) for a in alerts]
    results = iter(ingest_optical_alerts(flat))
    return [alerts if isinstance(alerts, Exception) else [next(results) for _ in alerts] for alerts in parsed]


def _batched(survey: str | None) -> Callable[[Sequence[tuple[Any, Any]]], list[Any]]:
    def batch(messages: Sequence[tuple[Any, Any]]) -> list[Any]:
        return _handle_batch(messages, survey)

    return batch


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
