"""The SNEWS 2.0 coincidence decider: a pure, deterministic state machine (no Kafka, no database, no clock).

Feed it parsed messages (:func:`~tom_mma_broker.snews.messages.parse_message`) with their arrival times;
it returns the alerts the SNEWS 2.0 coincidence server would publish, and a "no coincidence" outcome for a
coincidence-tier message that yields none. Its whole state is a JSON-able dict (:meth:`Decider.to_state`,
:meth:`Decider.from_state`), which the stream keeps in the database.

The grouping follows ``snews-cs`` 3.0.1 (``snews_coinc.CacheManager``), per lane (observation, test and
fire drill: three caches; a test or fire-drill message never touches the observation cache):

* a message from a detector not in the cache joins every sub-group whose earliest neutrino time is before
  its own by more than 0 and at most ``window_s`` (state ``COINC_MSG``: an alert when the group grew);
* a message that joins none opens sub-groups around itself: one with the cached messages up to
  ``window_s`` before it, one with those up to ``window_s`` after it (one only, when both hold the same
  messages). A new group that repeats an existing one (a single message already cached, or a subset of
  another group) is dropped. A new group of two or more messages is a re-anchored (staggered)
  coincidence: ``COINC_MSG_STAGGERED``;
* a message from a detector already in the cache replaces its earlier message in each sub-group whose
  earliest time is within ``window_s`` of the new neutrino time, and yields ``UPDATE`` for each such
  group of two or more;
* a retraction removes the message (by its uuid, or the detector's latest ``n``), and each group that
  lost a message yields ``RETRACTION`` (an empty group is gone silently);
* messages expire ``expiry_s`` after their arrival (silently: no alert); the false-alarm figure counts the
  detectors that sent a heartbeat within ``heartbeat_window_s`` (see :mod:`.stats`).

Where this differs from ``snews-cs`` on purpose (``docs/snews.md``): a repeat that falls outside every
group's window changes nothing and publishes nothing (``snews-cs`` publishes an ``UPDATE`` of an unchanged
group); a new sub-group is numbered as ``snews-cs`` numbers it (the count of groups, and one more for the
group after the message) unless that number is still in use, when it takes one more than the highest in
use (``snews-cs`` would merge it into the group of that number); expiry follows the message's
arrival time given by the caller (``snews-cs`` reads the wall clock); alerts of one message come in
ascending sub-group order.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from .messages import LANES, ObservationMessage, SnewsMessageError, format_time_ns
from .stats import SECONDS_PER_WEEK, false_alarm_figure

__all__ = ["Decider", "CoincidenceAlert", "NoCoincidence", "Decision", "ALERT_TYPES"]

ALERT_TYPES = ("COINC_MSG", "COINC_MSG_STAGGERED", "UPDATE", "RETRACTION")
STATE_VERSION = 1
_NS = 10**9


@dataclass(frozen=True)
class CoincidenceAlert:
    """One SNEWS 2.0 coincidence alert (the fields of ``snews-cs``'s alert, in snake case).

    ``alert_type`` is prefixed ``TEST `` in the test lane (as ``snews-cs``) and ``FIREDRILL `` in the fire
    drill lane; ``false_alarm_prob`` is ``None`` outside the observation lane (``snews-cs``: ``"N/A"``).
    """

    alert_id: str
    id: str
    alert_type: str
    lane: str
    server_tag: str
    sub_list_number: int
    detector_names: tuple[str, ...]
    neutrino_times: tuple[str, ...]
    p_values: tuple[float | None, ...]
    p_values_average: float | None
    false_alarm_prob: float | None
    sent_time: str
    message_uids: tuple[str, ...]
    trigger_uid: str
    #: names the sub-group through its updates and retractions (a sub-list number is reused once freed)
    group_id: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The alert as published (JSON-able)."""
        # by hand: dataclasses.asdict deep-copies every value, a tenth of a millisecond per alert
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        for key in ("detector_names", "neutrino_times", "p_values", "message_uids"):
            data[key] = list(data[key])
        data["schema"] = "tom-mma/snews-alert/v1"
        return data


@dataclass(frozen=True)
class NoCoincidence:
    """What goes back to the experiments when a coincidence-tier message makes no alert (SNEWS 1.0's flow)."""

    alert_id: str
    lane: str
    server_tag: str
    detector_name: str
    message_uid: str
    neutrino_time: str | None
    reason: str
    sent_time: str

    def to_dict(self) -> dict[str, Any]:
        """The message as the JSON document sent to the no-coincidence topic."""
        data = asdict(self)
        data["alert_type"] = "NO_COINCIDENCE"
        data["schema"] = "tom-mma/snews-no-coincidence/v1"
        return data


@dataclass(frozen=True)
class Decision:
    """The outcome of one message: what it did and what would be published."""

    message_uid: str
    action: str
    alerts: tuple[CoincidenceAlert, ...] = ()
    no_coincidence: NoCoincidence | None = None


@dataclass
class _Entry:
    uid: str
    detector: str
    time_ns: int
    p_val: float | None
    arrival_ns: int
    seq: int


@dataclass
class _Lane:
    entries: dict[str, _Entry] = field(default_factory=dict)
    groups: dict[int, list[str]] = field(default_factory=dict)
    counts: dict[int, int] = field(default_factory=dict)
    ids: dict[int, str] = field(default_factory=dict)

    def open(self, tag: int, members: list[str], creator: str) -> None:
        self.groups[tag] = members
        self.ids[tag] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"tom-mma:snews:group:{creator}:{tag}"))

    def by_detector(self, detector: str) -> list[_Entry]:
        return [e for e in self.entries.values() if e.detector == detector]

    def anchor(self, tag: int) -> int:
        return min(self.entries[u].time_ns for u in self.groups[tag])

    def sort(self, uids: Iterable[str]) -> list[str]:
        return sorted(uids, key=lambda u: (self.entries[u].time_ns, self.entries[u].seq))

    def drop(self, uids: set[str]) -> None:
        """Remove ``uids`` from the cache and from every group; empty groups are gone."""
        for uid in uids:
            self.entries.pop(uid, None)
        for tag in list(self.groups):
            kept = [u for u in self.groups[tag] if u not in uids]
            if kept:
                self.groups[tag] = kept
            else:
                del self.groups[tag]
                self.counts.pop(tag, None)
                self.ids.pop(tag, None)


class Decider:
    """The SNEWS 2.0 coincidence decider (see the module docstring for the rules).

    Parameters
    ----------
    window_s : float
        The coincidence window (SNEWS: 10 s).
    expiry_s : float
        How long a message stays in the cache after its arrival (SNEWS: 120 s).
    heartbeat_window_s : float
        A detector counts as online for the false-alarm figure this long after its last heartbeat
        (``snews-cs`` keeps heartbeats 7 days).
    server_tag : str
        Names this decider in its alerts.
    rates_per_s : mapping, optional
        Each detector's false-alarm (imitation) frequency per second; default one per week.

    Examples
    --------
    >>> from tom_mma_broker.snews.messages import parse_message
    >>> d = Decider()
    >>> m = lambda det, t: parse_message({"detector_name": det, "neutrino_time_utc": t, "p_val": 0.1})
    >>> d.process(m("XENONnT", "2030-01-01T12:34:45.678999")).action
    'initial'
    >>> [a.alert_type for a in d.process(m("DS-20K", "2030-01-01T12:34:47.678999")).alerts]
    ['COINC_MSG']
    """

    def __init__(
        self,
        window_s: float = 10.0,
        expiry_s: float = 120.0,
        heartbeat_window_s: float = 7 * 86400.0,
        server_tag: str = "tom-mma",
        rates_per_s: Mapping[str, float] | None = None,
    ) -> None:
        if window_s <= 0 or expiry_s <= 0 or heartbeat_window_s <= 0:
            raise ValueError("window_s, expiry_s and heartbeat_window_s must be positive")
        self.window_s = float(window_s)
        self.expiry_s = float(expiry_s)
        self.heartbeat_window_s = float(heartbeat_window_s)
        self.server_tag = server_tag
        self.rates_per_s = dict(rates_per_s or {})
        self._window_ns = round(self.window_s * _NS)
        self._expiry_ns = round(self.expiry_s * _NS)
        self._heartbeat_ns = round(self.heartbeat_window_s * _NS)
        self.lanes: dict[str, _Lane] = {lane: _Lane() for lane in LANES}
        self.heartbeats: dict[str, int] = {}  # detector -> arrival of its last heartbeat
        self.clock_ns: int | None = None
        self.seq = 0
        self.messages_seen = 0

    # -- the one entry point --------------------------------------------------------------------
    def process(self, message: ObservationMessage, arrival_ns: int | None = None) -> Decision:
        """Take one message; return what it did and the alerts to publish.

        Parameters
        ----------
        message : ObservationMessage
            A parsed message.
        arrival_ns : int, optional
            When it arrived (ns since the epoch): the stream gives the Kafka timestamp. Default: the
            message's own sent/machine/neutrino time. The decider's clock never goes back: an earlier
            arrival counts as the latest one seen.

        Raises
        ------
        SnewsMessageError
            For a message with no time to place it at (nothing is changed).
        """
        if arrival_ns is None:
            arrival_ns = message.default_arrival_ns()
        if arrival_ns is None:
            if self.clock_ns is None:
                raise SnewsMessageError("the message has no time and the decider has no clock yet")
            arrival_ns = self.clock_ns
        now = arrival_ns if self.clock_ns is None else max(self.clock_ns, arrival_ns)
        self.clock_ns = now
        self.messages_seen += 1
        self._expire(now)
        lane = self.lanes[message.lane]
        if message.tier == "Heartbeat":
            self.heartbeats[message.detector_name] = now
            return Decision(message.uid, "heartbeat")
        if message.tier == "Retraction":
            return self._retract(lane, message, now)
        if not message.joins_coincidence:
            return Decision(message.uid, f"recorded {message.tier}")
        if message.uid in lane.entries:
            return Decision(message.uid, "duplicate")
        self.seq += 1
        entry = _Entry(message.uid, message.detector_name, message.neutrino_time_ns, message.p_val, now, self.seq)
        states: dict[int, str | None] = {}
        if lane.by_detector(entry.detector):
            action = self._update(lane, entry, states)
        elif not lane.entries:
            lane.entries[entry.uid] = entry
            lane.open(0, [entry.uid], entry.uid)
            states[0] = "INITIAL"
            action = "initial"
        else:
            action = self._add(lane, entry, states)
        alerts = self._decide(lane, message.lane, states, entry.uid, now)
        no_coincidence = None
        if not alerts:
            no_coincidence = NoCoincidence(
                alert_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"tom-mma:snews:nocoinc:{message.lane}:{entry.uid}")),
                lane=message.lane,
                server_tag=self.server_tag,
                detector_name=entry.detector,
                message_uid=entry.uid,
                neutrino_time=format_time_ns(entry.time_ns),
                reason=action,
                sent_time=format_time_ns(now),
            )
        return Decision(message.uid, action, tuple(alerts), no_coincidence)

    # -- the rules ------------------------------------------------------------------------------
    def _add(self, lane: _Lane, entry: _Entry, states: dict[int, str | None]) -> str:
        joined = False
        for tag in sorted(lane.groups):
            delta = entry.time_ns - lane.anchor(tag)
            if 0 < delta <= self._window_ns:
                if not joined:
                    lane.entries[entry.uid] = entry
                lane.groups[tag] = lane.sort([*lane.groups[tag], entry.uid])
                states[tag] = "COINC_MSG"
                joined = True
        if joined:
            return "joined"
        # no group takes it: sub-groups around it, of the cached messages before it and after it
        candidates = list(lane.entries.values())
        early = [e.uid for e in candidates if -self._window_ns <= e.time_ns - entry.time_ns <= 0]
        post = [e.uid for e in candidates if 0 <= e.time_ns - entry.time_ns <= self._window_ns]
        lane.entries[entry.uid] = entry
        early = lane.sort([*early, entry.uid])
        post = lane.sort([*post, entry.uid])
        tag = len(lane.groups)  # snews-cs numbers new groups by the count of groups (see _organize)
        if early == post:
            self._organize(lane, tag, post, states, entry.uid)
        else:
            self._organize(lane, tag + 1, post, states, entry.uid)
            self._organize(lane, tag, early, states, entry.uid)
        return "new sub-group"

    def _organize(self, lane: _Lane, tag: int, members: list[str], states: dict[int, str | None], creator: str) -> None:
        """Add a new sub-group unless it repeats an existing one."""
        cached = {u for group in lane.groups.values() for u in group}
        if len(members) == 1 and members[0] in cached:
            return
        if any(set(members) <= set(group) for group in lane.groups.values()):
            return
        if tag in lane.groups:  # snews-cs would merge the new group into the one of that number
            tag = max(lane.groups) + 1
        lane.open(tag, members, creator)
        states[tag] = "COINC_MSG_STAGGERED" if len(members) > 1 else None

    def _update(self, lane: _Lane, entry: _Entry, states: dict[int, str | None]) -> str:
        old = {e.uid for e in lane.by_detector(entry.detector)}
        replaced = False
        for tag in sorted(lane.groups):
            members = lane.groups[tag]
            if not old.intersection(members):
                continue
            if abs(entry.time_ns - lane.anchor(tag)) > self._window_ns:
                continue  # outside this group's window: the group keeps the earlier message
            lane.entries.setdefault(entry.uid, entry)
            lane.groups[tag] = lane.sort([entry.uid if u in old else u for u in members])
            states[tag] = "UPDATE"
            replaced = True
        if not replaced:
            return "update outside the window"
        still_used = {u for group in lane.groups.values() for u in group}
        for uid in old - still_used:
            del lane.entries[uid]
        return "update"

    def _retract(self, lane: _Lane, message: ObservationMessage, now: int) -> Decision:
        if message.retract_message_uuid is not None:
            victims = {message.retract_message_uuid} & set(lane.entries)
            victims = {u for u in victims if lane.entries[u].detector == message.detector_name}
        else:
            mine = sorted(lane.by_detector(message.detector_name), key=lambda e: e.seq)
            victims = {e.uid for e in mine[-message.retract_latest_n :]}
        if not victims:
            return Decision(message.uid, "retraction of nothing cached")
        lane.drop(victims)
        states = {tag: "RETRACTION" for tag in lane.groups}
        alerts = self._decide(lane, message.lane, states, message.uid, now)
        return Decision(message.uid, "retraction", tuple(alerts))

    def _expire(self, now: int) -> None:
        for lane in self.lanes.values():
            old = {u for u, e in lane.entries.items() if e.arrival_ns < now - self._expiry_ns}
            if old:
                lane.drop(old)
                for tag in lane.groups:  # silent: the smaller group is the new reference
                    lane.counts[tag] = len(lane.groups[tag])
        for detector, seen in list(self.heartbeats.items()):
            if seen < now - self._heartbeat_ns:
                del self.heartbeats[detector]

    # -- alerts ---------------------------------------------------------------------------------
    def _decide(
        self, lane: _Lane, lane_name: str, states: dict[int, str | None], trigger: str, now: int
    ) -> list[CoincidenceAlert]:
        alerts = []
        for tag in sorted(states):
            state = states[tag]
            if state is None or tag not in lane.groups:
                continue
            count, before = len(lane.groups[tag]), lane.counts.get(tag, 0)
            publish = (
                (state == "COINC_MSG_STAGGERED")
                or (state == "RETRACTION" and count < before)
                or (state == "UPDATE" and count == before and count > 1)
                or (state == "COINC_MSG" and count > before)
            )
            if publish:
                alerts.append(self._alert(lane, lane_name, tag, state, trigger, now))
        for tag, members in lane.groups.items():
            lane.counts[tag] = len(members)
        return alerts

    def online_detectors(self) -> int:
        """Detectors with a heartbeat within ``heartbeat_window_s`` of the decider's clock."""
        return len(self.heartbeats)

    def _alert(self, lane: _Lane, lane_name: str, tag: int, state: str, trigger: str, now: int) -> CoincidenceAlert:
        members = [lane.entries[u] for u in lane.groups[tag]]
        names = tuple(e.detector for e in members)
        p_values = tuple(e.p_val for e in members)
        known = [p for p in p_values if p is not None]
        average = round(sum(known) / len(known), 5) if known else None
        fap = None
        if lane_name == "observation":
            fap = false_alarm_figure(
                names, self.online_detectors(), self.window_s, self.rates_per_s, 1 / SECONDS_PER_WEEK
            )
        prefix = {"observation": "", "test": "TEST ", "firedrill": "FIREDRILL "}[lane_name]
        sent = format_time_ns(now)
        label = "SNEWS_Coincidence_ALERT" if len(names) == 2 else "SNEWS_Coincidence_ALERT-UPDATE"
        return CoincidenceAlert(
            alert_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"tom-mma:snews:{lane_name}:{trigger}:{tag}:{state}")),
            id=f"{label} {sent}",
            alert_type=prefix + state,
            lane=lane_name,
            server_tag=self.server_tag,
            sub_list_number=tag,
            detector_names=names,
            neutrino_times=tuple(format_time_ns(e.time_ns) for e in members),
            p_values=p_values,
            p_values_average=average,
            false_alarm_prob=fap,
            sent_time=sent,
            message_uids=tuple(e.uid for e in members),
            trigger_uid=trigger,
            group_id=lane.ids.get(tag, ""),
        )

    # -- state ----------------------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        """The decider's whole state as a JSON-able dict (settings are not part of it)."""
        return {
            "version": STATE_VERSION,
            "clock_ns": self.clock_ns,
            "seq": self.seq,
            "messages_seen": self.messages_seen,
            "heartbeats": dict(self.heartbeats),
            "lanes": {
                name: {
                    "entries": [
                        {
                            "uid": e.uid,
                            "detector": e.detector,
                            "time_ns": e.time_ns,
                            "p_val": e.p_val,
                            "arrival_ns": e.arrival_ns,
                            "seq": e.seq,
                        }
                        for e in lane.entries.values()
                    ],  # fmt: skip
                    "groups": {str(tag): list(members) for tag, members in lane.groups.items()},
                    "counts": {str(tag): n for tag, n in lane.counts.items()},
                    "ids": {str(tag): i for tag, i in lane.ids.items()},
                }
                for name, lane in self.lanes.items()
            },
        }

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Replace this decider's state with ``state`` (from :meth:`to_state`)."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"unknown decider state version {state.get('version')!r}")
        self.clock_ns = state["clock_ns"]
        self.seq = state["seq"]
        self.messages_seen = state.get("messages_seen", 0)
        self.heartbeats = dict(state["heartbeats"])
        self.lanes = {lane: _Lane() for lane in LANES}
        for name, data in state["lanes"].items():
            lane = self.lanes[name]
            lane.entries = {e["uid"]: _Entry(**e) for e in data["entries"]}
            lane.groups = {int(tag): list(members) for tag, members in data["groups"].items()}
            lane.counts = {int(tag): n for tag, n in data["counts"].items()}
            lane.ids = {int(tag): i for tag, i in data.get("ids", {}).items()}

    @classmethod
    def from_state(cls, state: Mapping[str, Any], **settings: Any) -> Decider:
        """A decider with ``settings`` and the state ``state``."""
        decider = cls(**settings)
        decider.load_state(state)
        return decider

    def groups(self, lane: str = "observation") -> dict[int, list[str]]:
        """The sub-groups of a lane: number -> detector names in neutrino-time order (for tests and logs)."""
        cache = self.lanes[lane]
        return {tag: [cache.entries[u].detector for u in members] for tag, members in sorted(cache.groups.items())}
