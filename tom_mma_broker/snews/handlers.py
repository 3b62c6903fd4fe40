"""The topic handler of SNEWS 2.0 observation messages (``snews.experiments-*``).

In ``ALERT_STREAMS``, on a :class:`~tom_mma_broker.streams.ReliableHopskotchAlertStream`::

    "TOPIC_HANDLERS": {"snews.experiments-test": "tom_mma_broker.snews.handlers.snews_observation_handler"}

A payload that is not a valid SNEWS 2.0 JSON message (a Python pickle included) raises
:class:`~tom_mma_broker.snews.messages.SnewsMessageError`, which is permanent: the stream quarantines the
message at once with the reason.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from tom_mma.batching import batch_of

from .decider import Decision
from .messages import ObservationMessage, parse_message
from .service import decide, decide_all

__all__ = ["snews_observation_handler"]

logger = logging.getLogger(__name__)


def _read(alert: Any, metadata: Any) -> tuple[ObservationMessage, int]:
    """The parsed message and its arrival (ns since the epoch)."""
    message = parse_message(getattr(alert, "content", alert))
    timestamp_ms = getattr(metadata, "timestamp", 0) or 0
    # the Kafka timestamp; a file replayed (replayalerts) has none: it arrives now. Never the message's own
    # times here: one message stamped years ahead would stop the cache's clock-driven expiry for every other
    return message, int(timestamp_ms) * 1_000_000 if timestamp_ms > 0 else time.time_ns()


def snews_observation_handler(alert: Any, metadata: Any = None) -> Decision:
    """Take one SNEWS observation message: decide, keep the state, queue the alerts for publication.

    A run of the stream's messages goes to the handler's ``batch`` (:mod:`tom_mma_broker.ingest`): each is
    parsed alone, then the run goes through the decider in memory, and its state and alerts are written
    once (:func:`~tom_mma_broker.snews.service.decide_all`).

    Parameters
    ----------
    alert : hop model, dict or bytes
        ``.content`` a dict (JSON) or bytes (a blob: refused if it is a pickle).
    metadata : hop.io.Metadata, optional
        Its Kafka timestamp is the message's arrival time (now, without one).
    """
    return decide(*_read(alert, metadata))


# the stream's ingest hands a run of consecutive messages to the handler's ``batch`` at once
snews_observation_handler.batch = batch_of(_read, decide_all)  # type: ignore[attr-defined]
