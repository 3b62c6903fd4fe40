"""The GW170817 demo, end to end in one process (``mmademo``).

1. the embedded broker starts with the demo topics;
2. a reliable stream (configured in ``ALERT_STREAMS``) reads them in a thread;
3. the historic event is replayed onto the source topics: an LVK notice with the real sky map,
   then the real AT2017gfo photometry, point by point;
4. ingest archives every message; photometry lands under its candidate; each new point
   enqueues a classification (Celery; eager on embedded defaults); a score above the floor
   writes a derived alert to the outbox, which is published to the results topic;
5. the TOM's handler for the results topic turns derived alerts into a Target, its photometry,
   score history and, when the rule holds, an observation request on the TOM's facility.

Every message of the replay has a deterministic hop ``_id``, so running the demo again adds
nothing anywhere: the archive, the candidates, the classifications, the alerts, the Targets.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model

from .embedded import BrokerInfo
from .gw170817.replay import replay_message_id
from .kafka import embedded_broker, open_producer
from .models import ArchivedAlert, OutboxMessage
from .streams import ReliableHopskotchAlertStream

__all__ = ["DemoSummary", "demo_topics", "replay_message_id", "run_replay", "wait_until", "summary", "demo_login"]

logger = logging.getLogger(__name__)


def demo_topics() -> dict[str, str]:
    """The source and results topics of the demo."""
    from .conf import broker_settings
    from .gw170817 import DEFAULT_GW_TOPIC, DEFAULT_PHOTOMETRY_TOPIC, GW_STREAM, PHOTOMETRY_STREAM
    from .gw170817.grb import GRB_TOPIC
    from .gw170817.replay import GRB_STREAM

    topics = {GW_STREAM: DEFAULT_GW_TOPIC, PHOTOMETRY_STREAM: DEFAULT_PHOTOMETRY_TOPIC,
              "results": broker_settings.RESULTS_TOPIC}  # fmt: skip
    if _configured(GRB_TOPIC):  # GRB 170817A too, when the TOM reads its topic (the linker's demo)
        topics[GRB_STREAM] = GRB_TOPIC
    return topics


def _configured(topic: str) -> bool:
    for config in getattr(settings, "ALERT_STREAMS", []) or []:
        if config.get("ACTIVE", True) and topic in (config.get("OPTIONS", {}).get("TOPIC_HANDLERS") or {}):
            return True
    return False


def demo_messages(topics: dict[str, str] | None = None) -> list:
    """The messages the demo replays: GW170817's notices and photometry, and GRB 170817A if it has a topic.

    Parameters
    ----------
    topics : dict, optional
        Replay stream -> topic (default :func:`demo_topics`).

    Returns
    -------
    list of ReplayMessage
        In the order they are sent.
    """
    from .gw170817 import replay_messages
    from .gw170817.replay import GRB_STREAM

    return replay_messages(grb=GRB_STREAM in (topics or demo_topics()))


def run_replay(
    broker: BrokerInfo, speed: float, progress: Any = None, topics: dict[str, str] | None = None
) -> list[uuid.UUID]:
    """Publish the GW170817 replay (:func:`demo_messages`) to ``broker`` (:func:`~tom_mma_broker.gw170817.publish`).

    Returns the message ids (deterministic, :func:`replay_message_id`).
    """
    from .gw170817 import publish

    topics = topics or demo_topics()
    with open_producer(broker.url) as producer:
        ids = publish(demo_messages(topics), producer, topics, speed=speed, progress=progress)
        producer.flush()
    return ids


def stream_for_demo() -> ReliableHopskotchAlertStream:
    """The reliable stream of ``ALERT_STREAMS``, reading the demo topics from the beginning."""
    for config in getattr(settings, "ALERT_STREAMS", []) or []:
        if config.get("NAME") == "tom_mma_broker.streams.ReliableHopskotchAlertStream" and config.get("ACTIVE", True):
            options = dict(config.get("OPTIONS", {}))
            handlers = options.get("TOPIC_HANDLERS") or {}
            missing = [t for t in demo_topics().values() if t not in handlers]
            if missing:
                raise RuntimeError(f"ALERT_STREAMS does not read the demo topics {missing}")
            options.update(
                URL="embedded",
                START_POSITION="EARLIEST",
                GROUP_ID="tom-mma-demo",
                TOPIC_HANDLERS={t: handlers[t] for t in demo_topics().values()},
            )
            return ReliableHopskotchAlertStream(**options)
    raise RuntimeError("ALERT_STREAMS has no active tom_mma_broker.streams.ReliableHopskotchAlertStream")


def wait_until(predicate: Callable[[], bool], timeout: float, poll: Callable[[], None] | None = None) -> bool:
    """Poll ``predicate`` every 0.2 s until it holds or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if poll is not None:
            poll()
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


def pipeline_settled(message_ids: list[uuid.UUID]) -> bool:
    """Every replay message archived, the outbox empty, every derived alert received, every request made."""
    from tom_mma.models.derived import DerivedAlertRecord

    keys = [f"id:{i}" for i in message_ids]
    if ArchivedAlert.objects.filter(key__in=keys).count() < len(keys):
        return False
    if OutboxMessage.objects.filter(sent_at__isnull=True).exists():
        return False
    from .classification import unclassified_candidates

    if unclassified_candidates().exists():
        return False
    # the derived alerts the TOM reads back (links and SNEWS alerts go to topics of their own)
    sent = set(
        OutboxMessage.objects.filter(kind__in=["classification", "retraction"]).values_list("alert_id", flat=True)
    )
    received = set(DerivedAlertRecord.objects.filter(alert_id__in=sent).values_list("alert_id", flat=True))
    if not sent <= received:
        return False
    # what the stream handed to the background (eager mode) has run, and no request is still on its way
    from tom_mma import deferred
    from tom_mma.models import ObservationTrigger

    waiting = (ObservationTrigger.Status.PENDING, ObservationTrigger.Status.SUBMITTING)
    return deferred.drain(timeout=0) and not ObservationTrigger.objects.filter(status__in=waiting).exists()


@dataclass
class DemoSummary:
    """What the demo left in the TOM."""

    archived: int = 0
    quarantined: int = 0
    #: archived messages per topic (the replay's sources, and the derived alerts that came back)
    by_topic: dict[str, int] = field(default_factory=dict)
    candidates: list[dict] = field(default_factory=list)
    derived_alerts: int = 0
    targets: list[dict] = field(default_factory=list)
    observation_requests: list[dict] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    links: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The summary, a line each, for the terminal."""
        topics = ", ".join(f"{n} on {topic}" for topic, n in sorted(self.by_topic.items()))
        out = [f"archive: {self.archived} messages ({topics}; {self.quarantined} quarantined): what the replay "
               "sent, and the derived alerts that came back on the results topic"]  # fmt: skip
        for e in self.events:
            mock = (
                " (GW170817 replayed as a mock event from its real sky map)"
                if e["superevent_id"] == "MS170817a"
                else ""
            )
            out.append(f"GW event {e['superevent_id']}{mock}: {e['kind']}, {e['state']}, {e['notices']} notice(s)")
        out += self.links
        for c in self.candidates:
            out.append(f"candidate {c['name']}: {c['points']} points, {c['classifications']} classifications "
                       f"(points that arrive together are scored together), "
                       f"latest kilonova score {c['latest_score']}")  # fmt: skip
        out.append(f"derived alerts published and received: {self.derived_alerts}")
        for t in self.targets:
            out.append(f"Target {t['name']} (id {t['id']}): {t['photometry']} photometry points, "
                       f"score history {t['scores']}")  # fmt: skip
        for o in self.observation_requests:
            out.append(f"observation request {o['observation_id']} on {o['facility']} for {o['target']}: {o['status']}")
        return out


def summary() -> DemoSummary:
    """Count what the pipeline produced."""
    from django.db.models import Count
    from tom_dataproducts.models import PhotometryReducedDatum
    from tom_observations.models import ObservationRecord

    from tom_mma.display import status_of
    from tom_mma.models.derived import DerivedAlertRecord
    from tom_mma.models.gw import GWEvent

    from .models import Candidate, QuarantinedAlert

    s = DemoSummary(archived=ArchivedAlert.objects.count(), quarantined=QuarantinedAlert.objects.count())
    s.by_topic = dict(ArchivedAlert.objects.values_list("topic").annotate(n=Count("id")).values_list("topic", "n"))
    for event in GWEvent.objects.all():
        s.events.append({"superevent_id": event.superevent_id, "kind": event.kind, "state": event.state,
                         "notices": event.notices.count()})  # fmt: skip
    from tom_mma.models import EventLink

    for link in EventLink.objects.select_related("gw_event", "first", "second"):
        first = link.gw_event.superevent_id if link.gw_event_id else link.first.name
        score = "" if link.score is None else f", sky overlap {link.overlap:.3g}"
        s.links.append(f"linked: {first} and {link.second.name} ({link.second.source}), {link.dt:+.2f} s{score}")
    for c in Candidate.objects.all():
        latest = c.classifications.order_by("-n_points", "-id").first()
        s.candidates.append({"name": c.name, "points": c.points.count(), "classifications": c.classifications.count(),
                             "latest_score": None if latest is None else round(latest.score, 3)})  # fmt: skip
    records = DerivedAlertRecord.objects.filter(kind="classification").select_related("target")
    s.derived_alerts = records.count()
    for target in {r.target for r in records if r.target_id}:
        scores = [round(r.kilonova_score, 3) for r in records.filter(target=target).order_by("latest_point_mjd")]
        photometry = PhotometryReducedDatum.objects.filter(target=target).count()
        s.targets.append({"name": target.name, "id": target.pk, "photometry": photometry, "scores": scores})
    for o in ObservationRecord.objects.select_related("target"):
        # the status in the words the TOM's pages use (tom_mma.display), not the facility's own
        s.observation_requests.append({"observation_id": o.observation_id, "facility": o.facility,
                                       "target": o.target.name, "status": status_of(o).label})  # fmt: skip
    return s


def demo_login(state_dir: Path | None = None) -> tuple[str, str]:
    """The demo's login (a superuser), made once; its password kept beside the broker's state (mode 0600)."""
    state_dir = state_dir or embedded_broker().state_dir.parent
    path = state_dir / "demo_login.json"
    if path.exists():
        login = json.loads(path.read_text())
    else:
        login = {"username": "astronomer", "password": secrets.token_urlsafe(12)}
        state_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(login))
        path.chmod(0o600)
    user_model = get_user_model()
    user = user_model.objects.filter(username=login["username"]).first()
    if user is None:
        user_model.objects.create_superuser(login["username"], "", login["password"])
    elif not user.check_password(login["password"]):
        user.set_password(login["password"])
        user.save(update_fields=["password"])
    return login["username"], login["password"]


def start_stream() -> tuple[ReliableHopskotchAlertStream, threading.Thread]:
    """Start the demo stream in a daemon thread."""
    stream = stream_for_demo()
    thread = threading.Thread(target=stream.listen, name="tom-mma-demo-stream", daemon=True)
    thread.start()
    return stream, thread
