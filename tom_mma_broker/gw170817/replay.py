"""Replay GW170817 in time order: the messages, the pacing, the progress report, the publishing.

:func:`replay_messages` returns every message of the replay, sorted by event time: the LVK
notices first (PRELIMINARY 30 min after the merger, INITIAL when the three-detector BAYESTAR
map was made), then one photometry message per measurement. :func:`replay` sends them through
any callable, sleeping so that ``speed`` seconds of the event pass per second of wall clock;
:func:`publish` sends them to Kafka through a hop producer. The management command
``replaygw170817`` wires these together.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from tom_mma_broker.schemas.photometry import SCHEMA_ID as PHOTOMETRY_SCHEMA_ID
from tom_mma_broker.schemas.photometry import iso_to_mjd, mjd_to_iso

from .notice import (
    MERGER_MJD,
    MOCK_SUPEREVENT_ID,
    NOTICE_SCHEMA_ID,
    build_notice,
    gw170817_skymap,
    igwn_alert_schema,
    validate_notice,
)
from .photometry import DEMO_SELECTION, PhotometrySelection, load_photometry

__all__ = [
    "GW_STREAM",
    "GRB_STREAM",
    "PHOTOMETRY_STREAM",
    "DEFAULT_GW_TOPIC",
    "DEFAULT_PHOTOMETRY_TOPIC",
    "DEFAULT_SPEED",
    "REPLAY_HEADER",
    "REPLAY_VALUE",
    "SCHEMA_HEADER",
    "NOTICE_SCHEDULE",
    "ReplayMessage",
    "replay_messages",
    "replay",
    "publish",
    "replay_message_id",
    "ReplayProgress",
]

logger = logging.getLogger(__name__)

GW_STREAM = "gw"
PHOTOMETRY_STREAM = "photometry"
#: GRB 170817A, a Fermi GBM notice (JSON), sent only when asked for (:func:`replay_messages` ``grb=True``)
GRB_STREAM = "grb"
DEFAULT_GW_TOPIC = "tom-mma.gw170817.gwalert"
DEFAULT_PHOTOMETRY_TOPIC = "tom-mma.gw170817.photometry"
DEFAULT_SPEED = 86400.0 / 3.0
"""A day of the event in 3 seconds."""

REPLAY_HEADER = "x-tom-mma-replay"
REPLAY_VALUE = "GW170817"
SCHEMA_HEADER = "x-tom-mma-schema"

NOTICE_SCHEDULE = (
    # the first public LVC notice came about half an hour after the merger
    ("PRELIMINARY", MERGER_MJD + 1800.0 / 86400.0),
    # the sky map's DATE: when BAYESTAR made the three-detector map used here
    ("INITIAL", iso_to_mjd("2017-08-17T16:11:42Z")),
)
"""``(alert_type, MJD of time_created)`` of the notices the replay sends."""


@dataclass(frozen=True)
class ReplayMessage:
    """One message of the replay.

    Parameters
    ----------
    stream : str
        :data:`GW_STREAM` (an LVK notice) or :data:`PHOTOMETRY_STREAM` (a photometry point).
    mjd : float
        Event time of the message (notice creation, or observation), MJD UTC; the replay order.
    key : str
        Kafka key: the superevent id, or the point's ``point_id``.
    content : dict
        The igwn.alerts record (sent as hop ``AvroBlob``) or the photometry dict (hop ``JSONBlob``).
    headers : tuple of (str, bytes)
        The replay marker and the schema id; hop adds ``_id`` and ``_format``.
    """

    stream: str
    mjd: float
    key: str
    content: Mapping[str, Any]
    headers: tuple[tuple[str, bytes], ...]

    def __hash__(self) -> int:
        return hash((self.stream, self.key, self.mjd))

    @property
    def format(self) -> str:
        """Hop's ``_format`` of the message: ``avro`` or ``json``."""
        return "avro" if self.stream == GW_STREAM else "json"

    @property
    def schema_id(self) -> str:
        """The value of the :data:`SCHEMA_HEADER` header."""
        return dict(self.headers)[SCHEMA_HEADER].decode()

    def model(self):
        """The hop message model to write: ``AvroBlob`` (igwn.alerts schema) or ``JSONBlob``."""
        from hop.models import AvroBlob, JSONBlob

        if self.format == "avro":
            return AvroBlob(dict(self.content), schema=igwn_alert_schema())
        return JSONBlob(dict(self.content))

    def to_json_line(self, topic: str) -> str:
        """One JSON line describing the message (``--dry-run``); bytes (the sky map) as base64."""

        def default(value: Any) -> str:
            if isinstance(value, bytes):
                return base64.b64encode(value).decode()
            raise TypeError(f"not JSON serialisable: {type(value).__name__}")

        record = {
            "topic": topic,
            "key": self.key,
            "time": mjd_to_iso(self.mjd),
            "format": self.format,
            "headers": {k: v.decode() for k, v in self.headers},
            "value": self.content,
        }
        return json.dumps(record, default=default, sort_keys=True, allow_nan=False)


def _headers(schema_id: str) -> tuple[tuple[str, bytes], ...]:
    return ((REPLAY_HEADER, REPLAY_VALUE.encode()), (SCHEMA_HEADER, schema_id.encode()))


def replay_messages(
    selection: PhotometrySelection = DEMO_SELECTION,
    *,
    notices: Sequence[tuple[str, float]] = NOTICE_SCHEDULE,
    superevent_id: str = MOCK_SUPEREVENT_ID,
    grb: bool = False,
) -> list[ReplayMessage]:
    """Every message of the replay, in the order to send them.

    Parameters
    ----------
    selection : PhotometrySelection
        Which photometry to replay (default: the DECam g/r/i points of Cowperthwaite et al.).
    notices : sequence of (alert_type, mjd)
        The LVK notices to send and their ``time_created`` (default :data:`NOTICE_SCHEDULE`).
    superevent_id : str
        The mock superevent id of the notices and of the points' ``gw_event``.
    grb : bool
        Also send GRB 170817A as a Fermi GBM notice (:mod:`tom_mma_broker.gw170817.grb`, stream
        :data:`GRB_STREAM`), for the multi-messenger linker.

    Returns
    -------
    list of ReplayMessage
        Sorted by event time; notices before photometry at equal times.

    Examples
    --------
    >>> messages = replay_messages()
    >>> len(messages), [m.stream for m in messages[:3]]
    (27, ['gw', 'gw', 'photometry'])
    >>> messages[0].content["alert_type"], messages[0].key
    ('PRELIMINARY', 'MS170817a')
    """
    messages = []
    skymap = gw170817_skymap(superevent_id) if notices else None
    for alert_type, mjd in notices:
        notice = build_notice(skymap, alert_type, mjd_to_iso(mjd), superevent_id)
        validate_notice(notice)
        messages.append(ReplayMessage(GW_STREAM, mjd, superevent_id, notice, _headers(NOTICE_SCHEMA_ID)))
    if grb:
        from .grb import GRB_SCHEMA_ID, build_grb_notice

        notice = build_grb_notice()
        messages.append(ReplayMessage(GRB_STREAM, iso_to_mjd(notice["alert_datetime"]), notice["id"][-1], notice,
                                      _headers(GRB_SCHEMA_ID)))  # fmt: skip
    for point in load_photometry(selection, gw_event=superevent_id):
        messages.append(
            ReplayMessage(PHOTOMETRY_STREAM, point.mjd, point.point_id, point.to_dict(), _headers(PHOTOMETRY_SCHEMA_ID))
        )
    order = {GW_STREAM: 0, GRB_STREAM: 1, PHOTOMETRY_STREAM: 2}
    return sorted(messages, key=lambda m: (m.mjd, order[m.stream], m.key))


def replay(
    messages: Iterable[ReplayMessage],
    send: Callable[[ReplayMessage], None],
    *,
    speed: float = DEFAULT_SPEED,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Send ``messages`` in order, paced: event time runs ``speed`` times faster than wall clock.

    Parameters
    ----------
    messages : iterable of ReplayMessage
        In time order (:func:`replay_messages`).
    send : callable
        Called with each message, when its time has come.
    speed : float
        Seconds of event time per second of replay; 0 sends as fast as possible.
    sleep, clock : callable
        For tests.

    Returns
    -------
    int
        Messages sent.

    Examples
    --------
    >>> sent = []
    >>> replay(replay_messages()[:2], sent.append, speed=0)
    2
    """
    if speed < 0:
        raise ValueError(f"speed must be >= 0, not {speed}")
    count = 0
    start = first = None
    for message in messages:
        if speed > 0:
            if start is None:
                start, first = clock(), message.mjd
            due = start + (message.mjd - first) * 86400.0 / speed
            delay = due - clock()
            if delay > 0:
                sleep(delay)
        send(message)
        count += 1
    return count


def _columns(stream: TextIO) -> int:
    """Width of the terminal of ``stream``; 100 when it reports none (a bare pty says 0)."""
    try:
        columns = os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        columns = 0
    return columns or 100


class ReplayProgress:
    """A progress report: a tqdm bar on a terminal, a line every ~10 % otherwise.

    Parameters
    ----------
    total : int
        Messages to send.
    stream : text stream
        Where to report (stderr, so that ``--dry-run`` output stays clean).
    enabled : bool
        False reports nothing.
    tty : bool, optional
        Force the terminal (True) or line (False) mode; default ``stream.isatty()``.
    """

    def __init__(self, total: int, stream: TextIO, *, enabled: bool = True, tty: bool | None = None) -> None:
        self.total = total
        self.stream = stream
        self.enabled = enabled
        self.count = 0
        self._every = max(1, total // 10)
        self._bar = None
        if tty is None:
            isatty = getattr(stream, "isatty", None)
            tty = bool(isatty and isatty())
        if enabled and tty:
            from tqdm import tqdm

            self._bar = tqdm(total=total, file=stream, unit="msg", desc="GW170817", ncols=_columns(stream))

    def update(self, message: ReplayMessage) -> None:
        """Count one sent message."""
        self.count += 1
        if not self.enabled:
            return
        when = mjd_to_iso(message.mjd)[:19] + "Z"
        if self._bar is not None:
            self._bar.set_postfix_str(when[:16] + "Z", refresh=False)
            self._bar.update(1)
        elif self.count % self._every == 0 or self.count == self.total:
            self.stream.write(f"GW170817 replay: {self.count}/{self.total} messages, event time {when}\n")
            self.stream.flush()

    def close(self) -> None:
        """Finish the bar."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> ReplayProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


REPLAY_NAMESPACE = uuid.UUID("6f1c7a52-8a4e-4f0e-9a55-170817000000")
"""Namespace of the replay messages' ids (:func:`replay_message_id`)."""


def replay_message_id(message: ReplayMessage) -> uuid.UUID:
    """The deterministic hop ``_id`` of a replay message, so that a replay is idempotent end to end.

    The archive is keyed on ``_id``: replaying GW170817 again (the same message, the same id) adds nothing.

    Examples
    --------
    >>> from types import SimpleNamespace as M
    >>> replay_message_id(M(stream="gw", key="MS170817a", mjd=1.0)) == replay_message_id(
    ...     M(stream="gw", key="MS170817a", mjd=1.0))
    True
    """
    return uuid.uuid5(REPLAY_NAMESPACE, f"{message.stream}|{message.key}|{message.mjd:.8f}")


def publish(
    messages: Sequence[ReplayMessage],
    producer,
    topics: Mapping[str, str],
    *,
    speed: float = DEFAULT_SPEED,
    progress: ReplayProgress | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> list[uuid.UUID]:
    """Write ``messages`` with a hop producer, paced, keyed, with their headers and fixed ids.

    Each message is serialised by its hop model and written raw with hop's headers, its ``_id`` being
    :func:`replay_message_id`: a second replay writes the same ids, which the archive deduplicates.

    Parameters
    ----------
    messages : sequence of ReplayMessage
        From :func:`replay_messages`.
    producer : hop.io.Producer
        Open producer (``tom_mma_broker.kafka.open_producer``); not closed or flushed here.
    topics : mapping
        Topic of each stream: ``{GW_STREAM: ..., PHOTOMETRY_STREAM: ...}``.
    speed : float
        See :func:`replay`.
    progress : ReplayProgress, optional
        Updated after each message.

    Returns
    -------
    list of uuid.UUID
        The ids of the messages written, in order (delivery is confirmed when the producer is flushed or
        closed).
    """
    from tom_mma_broker.kafka import hop_headers

    ids: list[uuid.UUID] = []

    def send(message: ReplayMessage) -> None:
        encoded = message.model().serialize()
        message_id, headers = hop_headers(encoded["format"], message_id=replay_message_id(message),
                                          extra=message.headers)  # fmt: skip
        producer.write_raw(encoded["content"], headers, topic=topics[message.stream], key=message.key)
        ids.append(message_id)
        if progress is not None:
            progress.update(message)

    sent = replay(messages, send, speed=speed, sleep=sleep)
    logger.info("GW170817 replay: %s messages written to %s", sent, ", ".join(sorted(set(topics.values()))))
    return ids
