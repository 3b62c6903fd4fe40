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

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from ..conf import broker_settings
from ..models import OutboxMessage, SnewsDeciderState
from .decider import Decider, Decision
from .messages import ObservationMessage

__all__ = ["decider_from_settings", "decide", "alert_topic", "reset_cache"]

logger = logging.getLogger(__name__)

OUTBOX_KINDS = {"alert": "snews-alert", "no_coincidence": "snews-nocoinc"}

# process-local: (pid, decider name) -> (the decider this process last wrote, the revision it wrote)
_cached: dict[tuple[int, str], tuple[Decider, uuid.UUID]] = {}


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


def _load(name: str) -> tuple[Decider, uuid.UUID]:
    """The decider as the database holds it (the row locked until the transaction ends), and its revision."""
    row, _ = SnewsDeciderState.objects.select_for_update().get_or_create(name=name)
    decider = decider_from_settings()
    if row.state:
        decider.load_state(row.state)
    return decider, row.revision


def _write(name: str, revision: uuid.UUID, decider: Decider, written: uuid.UUID) -> bool:
    """Write the decider's state over the revision it was read at; False when the row holds another one."""
    rows = SnewsDeciderState.objects.filter(name=name, revision=revision)
    now = timezone.now()
    return bool(rows.update(state=decider.to_state(), revision=written, messages=F("messages") + 1, updated=now))


def decide(message: ObservationMessage, arrival_ns: int | None = None, name: str = "default") -> Decision:
    """Run ``message`` through the decider, keep its new state and queue its alerts (one transaction).

    The process keeps the decider it last wrote, with the revision it wrote: the state is written by an
    ``UPDATE ... WHERE revision = <that revision>``, which finds no row when the cached decider is stale (its
    write was rolled back, or another process wrote since): then the decider is loaded from the database (row
    locked) and the message taken again from there.

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
    key = (os.getpid(), name)
    # no savepoint of its own: inside the stream's batch the handler already runs in one (a failure rolls the
    # state and the alerts back together); alone, this is the transaction
    with transaction.atomic(savepoint=False):
        cached = _cached.pop(key, None)  # stale until its new state is written below
        decider, revision = cached if cached is not None else _load(name)
        decision = decider.process(message, arrival_ns)
        written = uuid.uuid4()
        if not _write(name, revision, decider, written):
            decider, revision = _load(name)
            decision = decider.process(message, arrival_ns)
            _write(name, revision, decider, written)
        _queue(decision)
    _cached[key] = (decider, written)
    for alert in decision.alerts if logger.isEnabledFor(logging.INFO) else ():
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
    if rows:
        # one row per alert id (unique): a message handled again queues nothing twice
        OutboxMessage.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows)
