"""The decider in the TOM: its state in the database, its alerts in the outbox, one write of each per batch.

:func:`decide_all` takes the parsed messages of a run of an ingest batch (the stream's or ``replayalerts``', through
the handler's ``batch``, :mod:`tom_mma_broker.snews.handlers`) inside the caller's transaction: it runs them
through the decider in memory, then writes the decider's new state once (a conditional ``UPDATE`` of one row)
and queues all their alerts in the outbox at once (one multi-row ``INSERT``). :func:`decide` does the same for
one message (a direct call, an archived message re-handled). A batch whose transaction rolls back changes
nothing: the process's cached decider is recognised as stale by its revision and reloaded.

The state is written over the revision the run started from. When the row holds another revision (the
cache is stale: a rolled-back batch, another process that wrote since) or a message failed half-way
through the decider, the state is loaded from the database (row locked) and the run's messages are taken
again from there, in order: the alerts queued are always those of the state that is kept.

Alert ids are derived from the message that caused them (uuid5), and the outbox holds one row per id: a
message handled again after a crash (redelivered before its offset was committed) queues nothing twice.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Sequence

from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from ..conf import broker_settings
from ..models import OutboxMessage, SnewsDeciderState
from ..outbox import announce
from .decider import Decider, Decision
from .messages import ObservationMessage

__all__ = ["decider_from_settings", "decide", "decide_all", "alert_topic", "reset_cache"]

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


def _write(name: str, revision: uuid.UUID, decider: Decider, written: uuid.UUID, n: int = 1) -> bool:
    """Write the decider's state (after ``n`` messages) over the revision it was read at.

    False when the row holds another revision.
    """
    rows = SnewsDeciderState.objects.filter(name=name, revision=revision)
    now = timezone.now()
    return bool(rows.update(state=decider.to_state(), revision=written, messages=F("messages") + n, updated=now))


class _Batch:
    """One run's decider in memory and the messages it took (to be taken again on a stale state)."""

    def __init__(self, name: str):
        self.name = name
        cached = _cached.pop((os.getpid(), name), None)  # stale until the batch's state is written
        self.decider, self.revision = cached if cached is not None else _load(name)
        self.messages: list[tuple[ObservationMessage, int | None]] = []
        self.decisions: list[Decision] = []
        self.dirty = False

    def take(self, message: ObservationMessage, arrival_ns: int | None) -> Decision:
        try:
            decision = self.decider.process(message, arrival_ns)
        except BaseException:
            self.dirty = True  # the decider may hold half of this message: reload it at the end
            raise
        self.messages.append((message, arrival_ns))
        self.decisions.append(decision)
        return decision

    def finish(self) -> list[Decision]:
        """Write the state once and queue every alert of the run; return the decisions kept."""
        if not self.messages:  # nothing to write; a decider a failed message left half-changed is forgotten
            if not self.dirty:
                _cached[(os.getpid(), self.name)] = (self.decider, self.revision)
            return []
        written = uuid.uuid4()
        n = len(self.messages)
        if self.dirty or not _write(self.name, self.revision, self.decider, written, n):
            self.decider, self.revision = _load(self.name)
            self.decisions = [self.decider.process(m, a) for m, a in self.messages]
            _write(self.name, self.revision, self.decider, written, n)
        if _queue(self.decisions):
            announce()  # the outbox's sender runs after the commit
        _cached[(os.getpid(), self.name)] = (self.decider, written)
        if logger.isEnabledFor(logging.INFO):
            for (message, _), decision in zip(self.messages, self.decisions, strict=True):
                for alert in decision.alerts:
                    logger.info("SNEWS %s: %s sub-group %d %s (message %s)", alert.lane, alert.alert_type,
                                alert.sub_list_number, ",".join(alert.detector_names), message.uid)  # fmt: skip
        return self.decisions


def decide(message: ObservationMessage, arrival_ns: int | None = None, name: str = "default") -> Decision:
    """Run ``message`` through the decider; keep its new state and queue its alerts in this transaction.

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
        What the message did, and the alerts it makes.
    """
    # no savepoint of its own: a caller's failure rolls the state and the alerts back together
    with transaction.atomic(savepoint=False):
        batch = _Batch(name)
        batch.take(message, arrival_ns)
        (decision,) = batch.finish()
    return decision


def decide_all(
    messages: Sequence[tuple[ObservationMessage, int | None]], name: str = "default"
) -> list[Decision | Exception]:
    """Run messages through the decider in memory, in order; then keep its state and queue their alerts, once.

    Parameters
    ----------
    messages : sequence of (ObservationMessage, int or None)
        Parsed messages and their arrivals (as for :func:`decide`).
    name : str
        Which decider.

    Returns
    -------
    list
        One item per message: its :class:`Decision` as kept (taken again from the database's state when the
        cached one was stale), or the exception it raised inside the decider (nothing of it is kept; the
        others are taken again from the database's state).
    """
    if not messages:
        return []
    out: list[Decision | Exception] = []
    with transaction.atomic(savepoint=False):
        batch = _Batch(name)
        for message, arrival_ns in messages:
            try:
                out.append(batch.take(message, arrival_ns))
            except Exception as exc:  # noqa: BLE001 - the message's own failure, returned to the ingest for it
                out.append(exc)
        kept = iter(batch.finish())
    return [o if isinstance(o, Exception) else next(kept) for o in out]


_OUTBOX_COLUMNS = ("alert_id", "topic", "kind", "payload", "created", "attempts", "last_error")


def _queue(decisions: list[Decision]) -> int:
    """Queue the decisions' alerts in the outbox: one multi-row ``INSERT`` (per 500 rows); how many were made.

    Written as SQL rather than ``bulk_create``, whose per-field preparation of model instances cost more than
    the decider itself (0.3 ms an alert, measured with bench/snews_decider.py): the values are those Django
    would write (the alert id through the field's own conversion, ``created`` as ``auto_now_add`` sets it).
    """
    import orjson

    topics = {lane: alert_topic(lane) for lane in ("observation", "test", "firedrill")}
    values: list[tuple[uuid.UUID, str, str, bytes]] = []
    for decision in decisions:
        values += [(uuid.UUID(a.alert_id), topics[a.lane], OUTBOX_KINDS["alert"], orjson.dumps(a.to_dict()))
                   for a in decision.alerts]  # fmt: skip
        if decision.no_coincidence is not None:
            nc = decision.no_coincidence
            values.append((uuid.UUID(nc.alert_id), broker_settings.SNEWS_NO_COINCIDENCE_TOPIC,
                           OUTBOX_KINDS["no_coincidence"], orjson.dumps(nc.to_dict())))  # fmt: skip
    if not values:
        return 0
    meta = OutboxMessage._meta
    quote = connection.ops.quote_name
    alert_id = meta.get_field("alert_id")
    created = connection.ops.adapt_datetimefield_value(timezone.now())
    fields = [meta.get_field(name) for name in _OUTBOX_COLUMNS]
    per_statement = max(1, min(500, connection.ops.bulk_batch_size(fields, values)))
    head = f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) VALUES "
    placeholder = "(" + ", ".join(["%s"] * len(fields)) + ")"
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # one statement of four arrays: its text is the same for every batch (psycopg parses a query text once;
            # a VALUES list of a thousand placeholders was parsed again for each batch, 8 ms)
            columns = ", ".join(quote(f.column) for f in fields)
            cursor.execute(
                f"INSERT INTO {quote(meta.db_table)} ({columns}) SELECT a, t, k, p, %s, 0, '' "
                "FROM unnest(%s::uuid[], %s::text[], %s::text[], %s::bytea[]) AS v(a, t, k, p) "
                "ON CONFLICT (alert_id) DO NOTHING",
                [created, *map(list, zip(*values, strict=True))],
            )
            return len(values)
        for start in range(0, len(values), per_statement):
            chunk = values[start : start + per_statement]
            params: list[object] = []
            for aid, topic, kind, payload in chunk:
                params += [alert_id.get_db_prep_value(aid, connection), topic, kind, payload, created, 0, ""]
            # one row per alert id (unique): a message handled again queues nothing twice
            cursor.execute(head + ", ".join([placeholder] * len(chunk)) + " ON CONFLICT (alert_id) DO NOTHING",
                           params)  # fmt: skip
    return len(values)
