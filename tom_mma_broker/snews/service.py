"""The decider in the TOM: its state in the database, its alerts in the outbox.

:func:`decide` takes one parsed message inside the caller's transaction (the stream's ingest batch): it loads
the decider's state (locked, so two consumers take turns), runs the message through it, writes the new state
and queues the alerts in the outbox (:class:`~tom_mma_broker.models.OutboxMessage`), all in that
transaction. A message whose transaction rolls back changes nothing: the process's cached decider is
recognised as stale by its revision and reloaded.

Alert ids are derived from the message that caused them (uuid5), and the outbox holds one row per id: a
message handled again after a crash (redelivered before its offset was committed) queues nothing twice.
"""

from __future__ import annotations

import logging
import os
import uuid
from typing import Any

from django.db import transaction

from ..conf import broker_settings
from ..models import OutboxMessage, SnewsDeciderState
from .decider import Decider, Decision
from .messages import ObservationMessage

__all__ = ["decider_from_settings", "decide", "alert_topic", "reset_cache"]

logger = logging.getLogger(__name__)

OUTBOX_KINDS = {"alert": "snews-alert", "no_coincidence": "snews-nocoinc"}

# process-local: (pid, revision) -> the decider in the state of that revision
_cached: dict[str, Any] = {}


def decider_from_settings() -> Decider:
    """A new decider with ``TOM_MMA_BROKER``'s ``SNEWS_*`` settings."""
    return Decider(
        window_s=broker_settings.SNEWS_WINDOW_S,
        expiry_s=broker_settings.SNEWS_EXPIRY_S,
        heartbeat_window_s=broker_settings.SNEWS_HEARTBEAT_WINDOW_S,
        server_tag=broker_settings.SNEWS_SERVER_TAG,
        rates_per_s=broker_settings.SNEWS_FALSE_ALARM_RATES,
    )


def alert_topic(lane: str) -> str:
    """The topic of coincidence alerts of a lane (observation, test, firedrill)."""
    return {
        "observation": broker_settings.SNEWS_ALERT_TOPIC,
        "test": broker_settings.SNEWS_TEST_ALERT_TOPIC,
        "firedrill": broker_settings.SNEWS_FIREDRILL_ALERT_TOPIC,
    }[lane]


def reset_cache() -> None:
    """Forget this process's cached decider (the next message reloads it from the database)."""
    _cached.clear()


def _decider_for(row: SnewsDeciderState) -> Decider:
    cached = _cached.get("decider")
    if cached is not None and _cached.get("key") == (os.getpid(), str(row.revision)):
        return cached
    decider = decider_from_settings()
    if row.state:
        decider.load_state(row.state)
    return decider


def decide(message: ObservationMessage, arrival_ns: int | None = None, name: str = "default") -> Decision:
    """Run ``message`` through the decider, keep its new state and queue its alerts (one transaction).

    Parameters
    ----------
    message : ObservationMessage
        A parsed SNEWS message.
    arrival_ns : int, optional
        Its arrival (ns since the epoch; the stream gives the Kafka timestamp).
    name : str
        Which decider (one per name; ``default``).

    Returns
    -------
    Decision
        What the message did, and the alerts queued.
    """
    with transaction.atomic():
        row, _ = SnewsDeciderState.objects.select_for_update().get_or_create(name=name)
        decider = _decider_for(row)
        _cached.clear()  # the decider is changed below: stale until its new state is written
        decision = decider.process(message, arrival_ns)
        row.state = decider.to_state()
        row.revision = uuid.uuid4()
        row.messages += 1
        row.save(update_fields=["state", "revision", "messages", "updated"])
        _queue(decision)
    _cached.update(decider=decider, key=(os.getpid(), str(row.revision)))
    for alert in decision.alerts:
        logger.info(
            "SNEWS %s: %s sub-group %d %s (message %s)",
            alert.lane,
            alert.alert_type,
            alert.sub_list_number,
            ",".join(alert.detector_names),
            message.uid,
        )
    return decision


def _queue(decision: Decision) -> int:
    import orjson

    rows = [
        OutboxMessage(alert_id=uuid.UUID(a.alert_id), topic=alert_topic(a.lane), kind=OUTBOX_KINDS["alert"],
                      payload=orjson.dumps(a.to_dict()))
        for a in decision.alerts
    ]  # fmt: skip
    if decision.no_coincidence is not None:
        nc = decision.no_coincidence
        rows.append(OutboxMessage(alert_id=uuid.UUID(nc.alert_id), topic=broker_settings.SNEWS_NO_COINCIDENCE_TOPIC,
                                  kind=OUTBOX_KINDS["no_coincidence"], payload=orjson.dumps(nc.to_dict())))  # fmt: skip
    if not rows:
        return 0
    ids = [r.alert_id for r in rows]
    known = set(OutboxMessage.objects.filter(alert_id__in=ids).values_list("alert_id", flat=True))
    fresh = [r for r in rows if r.alert_id not in known]
    OutboxMessage.objects.bulk_create(fresh)
    return len(fresh)
