"""The chaos harness's workloads (synthetic light curves, poison) and its counting (own SQL, own consumer)."""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import time
import uuid
from dataclasses import dataclass, field

from chaos_system import NGC4993, SUPEREVENT, TOPICS, ChaosSystem


# -- the workload -----------------------------------------------------------------------------------------------
@dataclass
class Batch:
    """One fault's messages: what the harness published, by id, and what each good one carries."""

    prefix: str
    messages: list[tuple[uuid.UUID, bytes, str]] = field(default_factory=list)  # (id, payload, key)
    poison: set[uuid.UUID] = field(default_factory=set)
    points: dict[str, tuple[str, float, str]] = field(default_factory=dict)  # point id -> (name, mjd, band)

    @property
    def ids(self) -> list[uuid.UUID]:
        return [m[0] for m in self.messages]

    @property
    def candidates(self) -> set[str]:
        return {name for name, _, _ in self.points.values()}


def poison_payload(rng: random.Random, good: bytes) -> bytes:
    """A message the photometry handler must refuse: broken JSON, a missing field, a pickle, bad values."""
    kind = rng.randrange(5)
    if kind == 0:
        return good[: len(good) // 2]  # truncated JSON
    if kind == 1:
        doc = json.loads(good)
        doc.pop("mjd", None)
        return json.dumps(doc).encode()
    if kind == 2:
        return b"\x80\x04\x95" + os.urandom(40) + b"."  # looks like a pickle: never unpickled
    if kind == 3:
        doc = json.loads(good)
        doc["magnitude"] = "bright"
        return json.dumps(doc).encode()
    doc = json.loads(good)
    doc["dec"] = 123.0
    return json.dumps(doc).encode()


_POSITIONS = itertools.count()
GRID_ARCSEC = 6.0  # three times the broker's merge cone: no two candidates of the harness are ever merged


def next_position() -> tuple[float, float]:
    """The next free position of a grid around NGC 4993 (inside GW170817's 90% region for the first 129,600)."""
    i = next(_POSITIONS)
    side = 360
    row, col = divmod(i % (side * side), side)
    dec = NGC4993[1] + (row - side / 2) * GRID_ARCSEC / 3600 + (i // (side * side)) * 0.7
    ra = NGC4993[0] + (col - side / 2) * GRID_ARCSEC / 3600 / math.cos(math.radians(dec))
    return ra % 360, dec


def make_batch(prefix: str, candidates: int, points: int, rng: random.Random, poison_fraction: float = 0.0,
               kilonova_fraction: float = 1.0) -> Batch:  # fmt: skip
    """Light curves of new candidates near NGC 4993, in GW170817's region.

    A ``kilonova_fraction`` of the candidates fade fast and redden (kilonova-like: derived alerts, requests);
    the others fade by a few hundredths of a magnitude a day, as most of a survey's transients do.
    """
    from tom_mma_broker.schemas.photometry import PhotometryMessage

    batch = Batch(prefix)
    messages = []
    for c in range(candidates):
        ra, dec = next_position()
        t0 = 57982.53 + rng.uniform(0.3, 0.6)
        fast = rng.random() < kilonova_fraction
        rates = {"g": 1.0, "r": 0.7, "i": 0.5} if fast else {"g": 0.03, "r": 0.02, "i": 0.015}
        for p in range(points):
            band = "gri"[p % 3]
            t = t0 + 0.4 * p + rng.uniform(0, 0.05)
            decline = rates[band]
            message = PhotometryMessage.create(
                object_name=f"{prefix}{c:04d}", ra=ra, dec=dec, mjd=t, band=band,
                magnitude=17.5 + decline * (t - t0) + rng.gauss(0, 0.03), magnitude_error=0.04,
                source="chaos", telescope="chaos", instrument="chaos", gw_event=SUPEREVENT,
            )  # fmt: skip
            messages.append((t, message))
    messages.sort(key=lambda m: m[0])
    for _, message in messages:
        payload = json.dumps(message.to_dict()).encode()
        message_id = uuid.uuid4()
        if poison_fraction and rng.random() < poison_fraction:
            batch.poison.add(message_id)
            payload = poison_payload(rng, payload)
        else:
            batch.points[message.point_id] = (message.object_name, message.mjd, message.band)
        batch.messages.append((message_id, payload, message.point_id))
    return batch


# -- counting: SQL and a Kafka consumer of the harness's own -------------------------------------------------------
def _sql(system: ChaosSystem, query: str, params: tuple = ()) -> list[tuple]:
    import psycopg

    with psycopg.connect(system.pg.url("chaos"), autocommit=True) as conn:
        return conn.execute(query, params).fetchall()


def results_topic_copies(system: ChaosSystem, alert_ids: set[str]) -> dict[str, int]:
    """How many times each derived alert of ``alert_ids`` is on the results topic (read from the start)."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": system.kafka_url, "group.id": f"chaos-count-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "session.timeout.ms": 6000})  # fmt: skip
    copies: dict[str, int] = {}
    try:
        metadata = consumer.list_topics(TOPICS["results"], timeout=10).topics[TOPICS["results"]]
        parts = [TopicPartition(TOPICS["results"], p, OFFSET_BEGINNING) for p in metadata.partitions]
        ends = {p.partition: consumer.get_watermark_offsets(p, timeout=10)[1] for p in parts}
        consumer.assign(parts)
        done = {p: end == 0 for p, end in ends.items()}
        deadline = time.monotonic() + 120
        while not all(done.values()) and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None or message.error():
                continue
            try:
                alert_id = json.loads(message.value()).get("alert_id")
            except (ValueError, AttributeError):
                alert_id = None
            if alert_id in alert_ids:
                copies[alert_id] = copies.get(alert_id, 0) + 1
            if message.offset() + 1 >= ends[message.partition()]:
                done[message.partition()] = True
    finally:
        consumer.close()
    return copies


def count(system: ChaosSystem, batch: Batch) -> dict:
    """Lost and duplicated, stage by stage, from the database and the results topic, against ``batch``."""
    like = batch.prefix + "%"
    ids = [str(i) for i in batch.ids]
    archived = dict(_sql(system, "SELECT message_id::text, count(*) FROM tom_mma_broker_archivedalert "
                                 "WHERE message_id::text = ANY(%s) GROUP BY 1", (ids,)))  # fmt: skip
    quarantined = dict(_sql(system, "SELECT a.message_id::text, q.reason FROM tom_mma_broker_quarantinedalert q "
                                    "JOIN tom_mma_broker_archivedalert a ON a.id = q.alert_id "
                                    "WHERE a.message_id::text = ANY(%s)", (ids,)))  # fmt: skip
    poison = {str(i) for i in batch.poison}
    points = dict(_sql(system, "SELECT point_id, count(*) FROM tom_mma_broker_candidatepoint "
                               "WHERE point_id = ANY(%s) GROUP BY 1", (list(batch.points),)))  # fmt: skip
    sent = {
        r[0]: r[1]
        for r in _sql(
            system,
            """
        SELECT o.alert_id::text, o.sent_at IS NOT NULL FROM tom_mma_broker_outboxmessage o
        JOIN tom_mma_broker_classification c ON c.id = o.classification_id
        JOIN tom_mma_broker_candidate d ON d.id = c.candidate_id WHERE d.name LIKE %s""",
            (like,),
        )
    }
    received = dict(_sql(system, "SELECT alert_id::text, count(*) FROM tom_mma_derivedalertrecord "
                                 "WHERE alert_id::text = ANY(%s) GROUP BY 1", (list(sent),)))  # fmt: skip
    latest = dict(_sql(system, "SELECT candidate_name, max(latest_point_mjd) FROM tom_mma_derivedalertrecord "
                               "WHERE candidate_name LIKE %s GROUP BY 1", (like,)))  # fmt: skip
    targets = dict(_sql(system, "SELECT name, count(*) FROM tom_targets_basetarget WHERE name LIKE %s GROUP BY 1",
                        (like,)))  # fmt: skip
    photometry = _sql(
        system,
        """
        SELECT t.name, r.timestamp, r.bandpass, count(*) FROM tom_dataproducts_photometryreduceddatum r
        JOIN tom_targets_basetarget t ON t.id = r.target_id WHERE t.name LIKE %s GROUP BY 1, 2, 3""",
        (like,),
    )
    records = dict(
        _sql(
            system,
            """
        SELECT t.name, count(*) FROM tom_observations_observationrecord o
        JOIN tom_targets_basetarget t ON t.id = o.target_id WHERE t.name LIKE %s GROUP BY 1""",
            (like,),
        )
    )
    triggers = _sql(
        system,
        """
        SELECT t.name, tr.status, tr.error, tr.attempts FROM tom_mma_observationtrigger tr
        JOIN tom_targets_basetarget t ON t.id = tr.target_id WHERE t.name LIKE %s""",
        (like,),
    )
    copies = results_topic_copies(system, set(sent))

    expected_points: dict[str, int] = {}
    for name, mjd, _ in batch.points.values():
        if name in latest and mjd <= latest[name] + 1e-9:
            expected_points[name] = expected_points.get(name, 0) + 1
    present_points: dict[str, int] = {}
    duplicated_points = 0
    for name, _, _, n in photometry:
        present_points[name] = present_points.get(name, 0) + 1
        duplicated_points += n - 1
    submitted = {name for name, status, _, _ in triggers if status == "submitted"}
    lost = {
        "archive": len(set(ids) - set(archived)),
        "wrongly_quarantined": len(set(quarantined) - poison),
        "poison_not_quarantined": len(poison - set(quarantined)),
        "points": len(set(batch.points) - set(points)),
        "derived_alerts_unsent": sum(1 for is_sent in sent.values() if not is_sent),
        "derived_alerts": len([a for a, is_sent in sent.items() if is_sent and a not in received]),
        "targets": len([name for name in latest if name not in targets]),
        "photometry": sum(max(0, n - present_points.get(name, 0)) for name, n in expected_points.items()),
        "observation_requests": len([name for name, status, _, _ in triggers if status != "submitted"])
        + len([name for name in submitted if name not in records]),
    }
    duplicated = {
        "archive": sum(n - 1 for n in archived.values()),
        "points": sum(n - 1 for n in points.values()),
        "derived_alerts_published": sum(n - 1 for n in copies.values()),
        "derived_alerts": sum(n - 1 for n in received.values()),
        "targets": sum(n - 1 for n in targets.values()),
        "photometry": duplicated_points,
        "observation_requests": sum(max(0, n - 1) for n in records.values()),
    }
    return {
        "messages": len(ids),
        "poison": len(poison),
        "candidates": len(batch.candidates),
        "derived_alerts": len(sent),
        "targets": len(targets),
        "observation_requests": sum(records.values()),
        "trigger_errors_seen": sorted({e.split(": ", 1)[-1][:80] for _, _, e, _ in triggers if e})[:3],
        "quarantine_reasons": sorted({r[:60] for r in quarantined.values()})[:5],
        "lost": lost,
        "duplicated": duplicated,
    }
