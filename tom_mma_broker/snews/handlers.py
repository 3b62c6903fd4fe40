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

from .decider import Decision
from .messages import parse_message
from .service import decide

__all__ = ["snews_observation_handler"]

logger = logging.getLogger(__name__)


def snews_observation_handler(alert: Any, metadata: Any = None) -> Decision:
    """Take one SNEWS observation message: decide, keep the state, queue the alerts for publication.

    Parameters
    ----------
    alert : hop model, dict or bytes
        ``.content`` a dict (JSON) or bytes (a blob: refused if it is a pickle).
    metadata : hop.io.Metadata, optional
        Its Kafka timestamp is the message's arrival time (now, without one).
    """
    content = getattr(alert, "content", alert)
    message = parse_message(content)
    timestamp_ms = getattr(metadata, "timestamp", 0) or 0
    # the Kafka timestamp; a file replayed (replayalerts) has none: it arrives now. Never the message's own
    # times here: one message stamped years ahead would stop the cache's clock-driven expiry for every other
    arrival_ns = int(timestamp_ms) * 1_000_000 if timestamp_ms > 0 else time.time_ns()
    # in the stream's batch: in memory; the state and the alerts are written once, at the end of the batch
    return decide(message, arrival_ns)


# in a batch it writes nothing itself (decide defers the writes to the batch's end): the ingest path runs it
# without a savepoint of its own (tom_mma_broker.ingest); a failure leaves the batch's decider marked dirty
snews_observation_handler.defers_writes = True  # type: ignore[attr-defined]
