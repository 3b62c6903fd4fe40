"""Faults on the running system, and what they lost or duplicated: the chaos harness.

The system runs as a production TOM runs it, on services of the harness's own (never the machine's shared
ones): a PostgreSQL cluster made with ``initdb`` in a temporary folder and started with ``pg_ctl``, a
``redis-server`` on a free port, the embedded Kafka broker (Tansu), and the TOM's processes: ``readstreams``
(the reliable stream), a Celery worker and Celery beat (the sweeps), with the settings of
``bench/chaos_settings.py``. A GW event (the GW170817 replay's notices and sky map) is active, and each
fault gets a workload of its own: synthetic kilonova-like light curves of new candidates inside the event's
90% region, as source photometry messages, so that every stage runs (archive, candidates, classification,
derived alerts out through the outbox and back in, Targets, photometry, observation requests).

Each fault is injected while that workload is in flight; the harness then waits for the system to settle
and counts, with SQL of its own against the database and a Kafka consumer of its own on the results topic,
what was lost and what was duplicated against its own list of the message ids it published:

============================  ===========================================================================
``kill9-consumer``            ``kill -9`` of ``readstreams`` at random moments, restarted each time
``broker-pause``              the Kafka broker SIGSTOPped (``--pause`` s, default 60), then resumed
``redis-stop``                Redis stopped for ``--pause`` s and started again, empty
``worker-kill``               the Celery worker ``kill -9``-ed while it works, restarted each time
``postgres-restart``          PostgreSQL stopped for a few seconds and started again
``facility-hang``             the facility hangs (20 s, then a timeout), then refuses connections, then
                              answers: the stream must not slow down, requests are retried and say why
``poison``                    1% poison messages among the good ones: each quarantined with its reason
``soak``                      ``--soak-rate`` messages/s for ``--soak-minutes``; every process's RSS over
                              time (plot); after the first fifth of the run (at most 5 minutes) no process
                              may grow by more than 5%
============================  ===========================================================================

Usage::

    python bench/chaos.py                       # every fault, full length (about an hour with the soak)
    python bench/chaos.py --quick               # every fault, seconds each (the test suite's version)
    python bench/chaos.py --faults kill9-consumer,redis-stop --messages 2000
    python bench/chaos.py --soak-minutes 30 --soak-rate 250

It prints a table of the faults, rewrites ``bench/chaos_report.md`` (with ``bench/chaos_soak.png``) unless
``--no-report``, and prints the figures as one JSON object on its last line (``faults``, ``survived``,
``lost``, ``duplicated``, and each fault's counts).
"""

from __future__ import annotations

import argparse
import glob
import itertools
import json
import math
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
TOPICS = {"gw": "tom-mma.gw170817.gwalert", "photometry": "tom-mma.gw170817.photometry",
          "results": "tom-mma.gw170817.derived"}  # fmt: skip
SUPEREVENT = "MS170817a"
NGC4993 = (197.4487, -23.3839)
TOM_PROCESSES = ("readstreams", "worker", "beat")
TOM_PROCESSES = ("readstreams", "worker", "beat")
FAULTS = ("kill9-consumer", "broker-pause", "redis-stop", "worker-kill", "postgres-restart", "facility-hang",
          "poison", "soak")  # fmt: skip


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    """Poll ``predicate`` (errors count as False) until it holds or ``timeout`` s pass."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return True
        except Exception:  # noqa: BLE001 - a database restarting, say: try again
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def rss_kb(pid: int | None) -> int | None:
    """Resident set size of ``pid`` in KiB (``/proc``), None if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, TypeError):
        return None
    return None


# -- services of the harness's own ---------------------------------------------------------------------------
class Child:
    """A child process the harness owns: started, killed, restarted, its RSS read."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path, cwd: Path = ROOT) -> None:
        self.name, self.argv, self.env, self.log, self.cwd = name, argv, env, log, cwd
        self.proc: subprocess.Popen | None = None
        self.restarts = 0

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.argv, cwd=self.cwd, env=self.env, stdout=log, stderr=log,
                                         start_new_session=True)  # fmt: skip

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self, timeout: float = 20.0) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill9()

    def restart(self) -> None:
        self.kill9()
        self.restarts += 1
        self.start()


class PrivatePostgres:
    """A PostgreSQL cluster in a temporary folder, on a free port (``initdb``, ``pg_ctl``)."""

    def __init__(self, root: Path) -> None:
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
        self.bin = Path(bins[-1]) if bins else Path(shutil.which("pg_ctl") or "pg_ctl").parent
        # initdb and the server refuse to run as root: as the postgres user then, in a folder it owns and can
        # reach (a root-only parent, such as pytest's temporary folders, would stop it)
        self.prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.root = Path(tempfile.mkdtemp(prefix="tom-mma-chaos-pg-")) if self.prefix else root
        self.data = self.root / "pgdata"
        self.port = free_port()
        self.log = self.root / "postgres.log"

    def _run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run([*self.prefix, *argv], check=False, capture_output=True, text=True)
        if check and done.returncode:
            raise RuntimeError(f"{' '.join(argv[:1])} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
        return done

    def init(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if self.prefix:
            shutil.chown(self.root, "postgres")
            self.root.chmod(0o755)
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync",
                  "-E", "UTF8")  # fmt: skip

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off -c max_connections=200"
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")

    def stop(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop", check=False)

    def remove(self) -> None:
        """Stop the cluster and delete its folder."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def url(self, db: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{db}"


class PrivateRedis(Child):
    """A ``redis-server`` on a free port that keeps nothing on disk."""

    def __init__(self, root: Path) -> None:
        self.port = free_port()
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(root)]  # fmt: skip
        super().__init__("redis", argv, dict(os.environ), root / "redis.log", cwd=root)

    def start(self) -> None:
        super().start()
        wait_for(self._ping, 10)

    def _ping(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


# -- the workload -------------------------------------------------------------------------------------------------
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


def make_batch(prefix: str, candidates: int, points: int, rng: random.Random, poison_fraction: float = 0.0) -> Batch:
    """Kilonova-like light curves (fast red decline) of new candidates near NGC 4993, in GW170817's region."""
    from tom_mma_broker.schemas.photometry import PhotometryMessage

    batch = Batch(prefix)
    messages = []
    for c in range(candidates):
        ra, dec = next_position()
        t0 = 57982.53 + rng.uniform(0.3, 0.6)
        for p in range(points):
            band = "gri"[p % 3]
            t = t0 + 0.4 * p + rng.uniform(0, 0.05)
            decline = {"g": 1.0, "r": 0.7, "i": 0.5}[band]
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


# -- the system -------------------------------------------------------------------------------------------------
class ChaosSystem:
    """PostgreSQL, Redis, Kafka, readstreams, a Celery worker and beat, all the harness's own."""

    def __init__(self, workdir: Path, sweep_s: float = 3.0) -> None:
        self.workdir = workdir
        self.pg = PrivatePostgres(workdir / "pg")
        self.redis = PrivateRedis(workdir)
        self.facility_file = workdir / "facility-mode"
        self.sweep_s = sweep_s
        self.children: dict[str, Child] = {}
        self.kafka_pid: int | None = None
        self.kafka_url = ""
        self._producer = None
        self._supervisor: threading.Thread | None = None
        self._stopping = threading.Event()
        self.supervised_restarts: dict[str, int] = {}

    # lifecycle
    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.pg.init()
        self.pg.start()
        subprocess.run(["psql", self.pg.url(), "-qc", "CREATE DATABASE chaos"], check=True, capture_output=True)
        self.redis.start()
        self.env = dict(
            os.environ,
            DJANGO_SETTINGS_MODULE="chaos_settings",
            PYTHONPATH=os.pathsep.join([str(ROOT), str(BENCH)]),
            DATABASE_URL=self.pg.url("chaos"),
            CELERY_BROKER_URL=self.redis.url,
            TOM_MMA_STATE_DIR=str(self.workdir / "state"),
            TOM_MMA_LOG_LEVEL="WARNING",
            TOM_MMA_CHAOS_FACILITY_FILE=str(self.facility_file),
            TOM_MMA_CHAOS_SWEEP_S=str(self.sweep_s),
            DJANGO_SECRET_KEY="chaos-harness-only",
            DJANGO_DEBUG="0",
        )
        os.environ.update(self.env)
        for path in (str(BENCH), str(ROOT)):
            if path not in sys.path:
                sys.path.insert(0, path)
        import logging

        import django

        django.setup()
        logging.disable(logging.INFO)  # the harness's own process: its figures, not the TOM's INFO lines
        from django.core.management import call_command

        from tom_mma_broker.kafka import embedded_broker

        call_command("migrate", verbosity=0)
        info = embedded_broker().start(TOPICS.values())
        self.kafka_pid, self.kafka_url = info.pid, f"{info.host}:{info.port}"
        python = sys.executable
        celery = [python, "-m", "celery", "-A", "example_tom"]
        self.children = {
            "readstreams": Child("readstreams", [python, "manage.py", "readstreams"], self.env,
                                 self.workdir / "readstreams.log"),
            "worker": Child("worker", [*celery, "worker", "--pool=solo", "--without-gossip", "--without-mingle",
                                       "--without-heartbeat", "-l", "warning"], self.env, self.workdir / "worker.log"),
            "beat": Child("beat", [*celery, "beat", "-l", "warning", "-s", str(self.workdir / "beat-schedule")],
                          self.env, self.workdir / "beat.log"),
        }  # fmt: skip
        for child in self.children.values():
            child.start()
        self._supervisor = threading.Thread(target=self._supervise, name="chaos-supervisor", daemon=True)
        self._supervisor.start()
        self._gw_event()

    def _supervise(self) -> None:
        """Restart a TOM process that died by itself, as systemd would (counted; the kills are the faults')."""
        while not self._stopping.wait(1.0):
            for name, child in self.children.items():
                if child.proc is not None and not child.alive() and not getattr(child, "held", False):
                    self.supervised_restarts[name] = self.supervised_restarts.get(name, 0) + 1
                    child.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._producer is not None:
            self._producer.flush(10)
        for child in self.children.values():
            child.stop()
        if self.kafka_pid:
            os.kill(self.kafka_pid, signal.SIGCONT) if _alive(self.kafka_pid) else None
            from tom_mma_broker.kafka import embedded_broker

            embedded_broker().stop()
        self.redis.stop()
        from django.db import connections

        connections.close_all()
        self.pg.stop()

    # publishing
    @property
    def producer(self):
        if self._producer is None:
            from confluent_kafka import Producer

            self._producer = Producer({"bootstrap.servers": self.kafka_url, "enable.idempotence": True,
                                       "queue.buffering.max.messages": 1_000_000, "linger.ms": 5,
                                       "message.timeout.ms": 600_000})  # fmt: skip
        return self._producer

    def publish(self, messages: list[tuple[uuid.UUID, bytes, str]], topic: str = TOPICS["photometry"],
                rate: float | None = None) -> None:  # fmt: skip
        """Send ``messages`` (id, payload, key) with hop's headers; ``rate`` per second, or at once."""
        started = time.monotonic()
        for n, (message_id, payload, key) in enumerate(messages):
            headers = [("_id", message_id.bytes), ("_sender", b"chaos"), ("_format", b"json")]
            while True:
                try:
                    self.producer.produce(topic, payload, key=key.encode(), headers=headers)
                    break
                except BufferError:
                    self.producer.poll(0.1)
            self.producer.poll(0)
            if rate:
                due = started + (n + 1) / rate
                pause = due - time.monotonic()
                if pause > 0:
                    time.sleep(pause)

    def flush(self, timeout: float = 120.0) -> int:
        return self.producer.flush(timeout)

    def _gw_event(self) -> None:
        """Publish the GW170817 replay's notices; wait until the event, its sky map and its ranking exist."""
        from tom_mma.models.gw import GWEvent
        from tom_mma_broker.gw170817 import publish, replay_messages
        from tom_mma_broker.kafka import open_producer

        notices = [m for m in replay_messages() if m.stream == "gw"]
        with open_producer(f"kafka://{self.kafka_url}") as producer:  # Avro notices with the sky map, as LVK sends
            publish(notices, producer, {"gw": TOPICS["gw"]}, speed=0)
            producer.flush()
        ok = wait_for(lambda: GWEvent.objects.filter(superevent_id=SUPEREVENT, skymaps__isnull=False).exists(), 180)
        if not ok:
            raise RuntimeError(f"the GW event did not arrive; see {self.workdir}/readstreams.log")

    # observing
    def archived(self, ids: list[uuid.UUID]) -> int:
        from tom_mma_broker.models import ArchivedAlert

        return ArchivedAlert.objects.filter(message_id__in=ids).count()

    def settled(self, batch: Batch) -> bool:
        """Everything the batch should cause has happened (or has been given up with a reason)."""
        from django.db import close_old_connections

        from tom_mma.models import ObservationTrigger
        from tom_mma.models.derived import DerivedAlertRecord
        from tom_mma_broker.classification import unclassified_candidates
        from tom_mma_broker.models import Candidate, OutboxMessage

        close_old_connections()
        if self.archived(batch.ids) < len(batch.ids):
            return False
        if Candidate.objects.filter(name__startswith=batch.prefix).count() < len(batch.candidates):
            return False
        if unclassified_candidates().filter(name__startswith=batch.prefix).exists():
            return False
        if OutboxMessage.objects.filter(sent_at__isnull=True).exists():
            return False
        sent = set(OutboxMessage.objects.filter(classification__candidate__name__startswith=batch.prefix)
                   .values_list("alert_id", flat=True))  # fmt: skip
        if DerivedAlertRecord.objects.filter(alert_id__in=sent).count() < len(sent):
            return False
        busy = ["pending", "submitting"]
        return not ObservationTrigger.objects.filter(target__name__startswith=batch.prefix, status__in=busy).exists()

    def settle(self, batch: Batch, timeout: float) -> bool:
        return wait_for(lambda: self.settled(batch), timeout, interval=0.5)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


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


# -- the faults -------------------------------------------------------------------------------------------------------
@dataclass
class Plan:
    """How long and how big each fault is (``--quick``: seconds; default: the issue's lengths)."""

    messages: int = 10_000
    points: int = 10
    kills: int = 10
    pause_s: float = 60.0
    settle_s: float = 900.0
    soak_minutes: float = 30.0
    soak_rate: float = 250.0
    hang_s: float = 20.0

    @classmethod
    def quick(cls) -> Plan:
        return cls(messages=120, points=6, kills=3, pause_s=5.0, settle_s=240.0, soak_minutes=0.5, soak_rate=20.0,
                   hang_s=1.0)  # fmt: skip


class Fault:
    """One fault: make a workload, inject the fault while it is in flight, settle, count."""

    def __init__(self, system: ChaosSystem, plan: Plan, rng: random.Random) -> None:
        self.system, self.plan, self.rng = system, plan, rng
        self.notes: list[str] = []

    def batch(self, prefix: str, poison_fraction: float = 0.0, share: float = 1.0) -> Batch:
        candidates = max(1, int(self.plan.messages * share) // self.plan.points)
        return make_batch(prefix, candidates, self.plan.points, self.rng, poison_fraction)

    def run(self, name: str) -> dict:
        started = time.monotonic()
        batch = getattr(self, name.replace("-", "_"))()
        settled = self.system.settle(batch, self.plan.settle_s)
        result = count(self.system, batch)
        result.update(fault=name, settled=settled, seconds=round(time.monotonic() - started, 1), notes=self.notes)
        result["lost_total"] = sum(result["lost"].values())
        result["duplicated_total"] = sum(result["duplicated"].values())
        result["survived"] = settled and result["lost_total"] == 0 and result["duplicated_total"] == 0
        return result

    def _wait_archived(self, batch: Batch, fraction: float, timeout: float = 120.0) -> bool:
        want = int(len(batch.ids) * fraction)
        return wait_for(lambda: self.system.archived(batch.ids) >= want, timeout)

    def kill9_consumer(self) -> Batch:
        batch = self.batch("CHK9")
        self.system.publish(batch.messages)
        self.system.flush()
        readstreams = self.system.children["readstreams"]
        marks = sorted(self.rng.uniform(0.05, 0.9) for _ in range(self.plan.kills))
        for mark in marks:
            self._wait_archived(batch, mark)
            readstreams.restart()  # kill -9, then start again at once
        self.notes.append(f"{len(marks)} kill -9 of readstreams at {', '.join(f'{m:.0%}' for m in marks)} archived")
        return batch

    def broker_pause(self) -> Batch:
        batch = self.batch("CHBP")
        half = len(batch.messages) // 2
        self.system.publish(batch.messages[:half])
        self.system.flush()
        self._wait_archived(batch, 0.2)
        os.kill(self.system.kafka_pid, signal.SIGSTOP)
        try:
            self.system.publish(batch.messages[half:])  # queued in the producer while the broker is stopped
            time.sleep(self.plan.pause_s)
        finally:
            os.kill(self.system.kafka_pid, signal.SIGCONT)
        self.system.flush(300)
        self.notes.append(f"Kafka broker SIGSTOPped for {self.plan.pause_s:g} s with half the batch in flight")
        return batch

    def redis_stop(self) -> Batch:
        batch = self.batch("CHRS")
        self.system.publish(batch.messages)
        self.system.flush()
        self._wait_archived(batch, 0.2)
        self.system.redis.stop()
        time.sleep(self.plan.pause_s)
        self.system.redis.start()
        self.notes.append(f"Redis stopped for {self.plan.pause_s:g} s mid-batch, started again empty")
        return batch

    def worker_kill(self) -> Batch:
        from tom_mma_broker.models import Classification

        batch = self.batch("CHWK")
        self.system.publish(batch.messages)
        self.system.flush()
        worker = self.system.children["worker"]
        kills = 0
        for _ in range(max(1, self.plan.kills // 2)):
            before = Classification.objects.filter(candidate__name__startswith=batch.prefix).count()
            # kill while it works: after it has classified something more
            wait_for(lambda b=before: Classification.objects.filter(candidate__name__startswith=batch.prefix)
                     .count() > b, 120, interval=0.05)  # fmt: skip
            worker.restart()
            kills += 1
        self.notes.append(f"{kills} kill -9 of the Celery worker while it classified")
        return batch

    def postgres_restart(self) -> Batch:
        batch = self.batch("CHPG")
        self.system.publish(batch.messages)
        self.system.flush()
        self._wait_archived(batch, 0.2)
        down = min(self.plan.pause_s, 10.0)
        self.system.pg.stop()
        time.sleep(down)
        self.system.pg.start()
        from django.db import connections

        connections.close_all()
        self.notes.append(f"PostgreSQL stopped (fast) for {down:g} s mid-batch, started again")
        return batch

    def facility_hang(self) -> Batch:
        from tom_mma.models import ObservationTrigger

        # a quarter of the messages each: every candidate is a request, and a hung facility holds a worker per
        # request (route facility tasks to a queue of their own in production: docs/running.md)
        batch = self.batch("CHFH", share=0.25)
        baseline = self.batch("CHFB", share=0.25)
        t0 = time.monotonic()
        self.system.publish(baseline.messages)
        self.system.flush()
        wait_for(lambda: self.system.archived(baseline.ids) >= len(baseline.ids), 300)
        baseline_s = time.monotonic() - t0
        self.system.facility_file.write_text(f"hang {self.plan.hang_s:g}")
        t0 = time.monotonic()
        self.system.publish(batch.messages)
        self.system.flush()
        wait_for(lambda: self.system.archived(batch.ids) >= len(batch.ids), 300)
        faulted_s = time.monotonic() - t0
        wait_for(lambda: ObservationTrigger.objects.filter(target__name__startswith=batch.prefix)
                 .exclude(error="").exists(), 120)  # fmt: skip
        self.system.facility_file.write_text("error")
        time.sleep(self.plan.pause_s)
        errors = set(ObservationTrigger.objects.filter(target__name__startswith=batch.prefix).exclude(error="")
                     .values_list("error", flat=True)[:20])  # fmt: skip
        self.system.facility_file.write_text("ok")
        said = "; ".join(sorted(e[:70] for e in errors)[:2])
        self.notes.append(f"archive time of the batch: {faulted_s:.1f} s with the facility hung, {baseline_s:.1f} s "
                          f"before (same size); requests said: {said}")  # fmt: skip
        self.stream_slowdown = faulted_s / baseline_s if baseline_s else None
        return batch

    def poison(self) -> Batch:
        batch = self.batch("CHPO", poison_fraction=0.01)
        if not batch.poison:  # a small quick run may draw none: one at least
            message_id, payload, key = batch.messages[len(batch.messages) // 2]
            del batch.points[key]
            batch.poison.add(message_id)
            batch.messages[len(batch.messages) // 2] = (message_id, poison_payload(self.rng, payload), key)
        self.system.publish(batch.messages)
        self.system.flush()
        self.notes.append(f"{len(batch.poison)} poison messages among {len(batch.messages)}")
        return batch

    def soak(self) -> Batch:
        seconds = self.plan.soak_minutes * 60
        total = int(seconds * self.plan.soak_rate)
        candidates = max(1, total // self.plan.points)
        batch = make_batch("CHSK", candidates, self.plan.points, self.rng)
        samples: list[tuple[float, dict[str, int | None]]] = []
        stop = threading.Event()

        def sample() -> None:
            t0 = time.monotonic()
            while not stop.wait(max(1.0, seconds / 120)):
                samples.append((time.monotonic() - t0, self.rss()))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        self.system.publish(batch.messages, rate=self.plan.soak_rate)
        self.system.flush()
        stop.set()
        sampler.join()
        self.soak_samples = samples
        self.soak_growth = rss_growth(samples, warmup_s=min(300.0, seconds / 5))
        growth = ", ".join(f"{k} {v:+.1%}" for k, v in self.soak_growth.items() if v is not None)
        self.notes.append(f"{total} messages at {self.plan.soak_rate:g}/s for {self.plan.soak_minutes:g} min; "
                          f"RSS growth after warm-up: {growth}")  # fmt: skip
        return batch

    def rss(self) -> dict[str, int | None]:
        pids = {name: child.pid for name, child in self.system.children.items()}
        pids.update(redis=self.system.redis.pid, kafka=self.system.kafka_pid, postgres=self.system.pg.pid())
        return {name: rss_kb(pid) for name, pid in pids.items()}


def rss_growth(samples: list[tuple[float, dict[str, int | None]]], warmup_s: float) -> dict[str, float | None]:
    """Each process's RSS growth from the first sample after ``warmup_s`` to the end (its max over the last 10%)."""
    after = [s for s in samples if s[0] >= warmup_s]
    if len(after) < 2:
        return {}
    growth: dict[str, float | None] = {}
    tail = after[-max(1, len(after) // 10) :]
    for name in after[0][1]:
        first = after[0][1].get(name)
        last = max((s[1].get(name) or 0) for s in tail)
        growth[name] = (last - first) / first if first else None
    return growth


# -- the report -------------------------------------------------------------------------------------------------
def soak_plot(samples: list[tuple[float, dict[str, int | None]]], path: Path, warmup_s: float) -> None:
    """RSS of every process over the soak (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    names = sorted({n for _, s in samples for n in s})
    for name in names:
        xs = [t / 60 for t, s in samples if s.get(name)]
        ys = [s[name] / 1024 for t, s in samples if s.get(name)]
        ax.plot(xs, ys, label=name)
    ax.axvline(warmup_s / 60, color="grey", linestyle=":", label="end of warm-up")
    ax.set_xlabel("minutes into the soak")
    ax.set_ylabel("RSS (MiB)")
    ax.set_yscale("log")
    ax.set_title("Resident memory of every process during the soak")
    ax.legend(fontsize="small", ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def table(results: list[dict]) -> str:
    """The faults as a Markdown table."""
    lines = ["| fault | survived | messages | lost | duplicated | settled in | what happened |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in results:
        lost = ", ".join(f"{k} {v}" for k, v in r["lost"].items() if v) or "0"
        if not r["settled"]:  # what is missing then may still be on its way: not counted as lost
            lost = f"not settled in {r['seconds']} s; still to do: {lost}"
        dup = ", ".join(f"{k} {v}" for k, v in r["duplicated"].items() if v) or "0"
        lines.append(f"| `{r['fault']}` | {'yes' if r['survived'] else '**no**'} | {r['messages']} | {lost} | {dup} "
                     f"| {r['seconds']} s | {'; '.join(r['notes'])} |")  # fmt: skip
    return "\n".join(lines)


def write_report(results: list[dict], figures: dict, path: Path, plot: str | None) -> None:
    """``bench/chaos_report.md``: what was run, the table, the soak plot."""
    text = [
        "# Chaos report",
        "",
        "Written by `python bench/chaos.py` (do not edit by hand). Faults injected on the running system "
        "(private PostgreSQL, Redis, the embedded Kafka broker, `readstreams`, a Celery worker and beat); lost and "
        "duplicated counted with the harness's own SQL and Kafka consumer against the ids it published.",
        "",
        f"Run: {figures['run']}",
        "",
        table(results),
        "",
        f"**{figures['survived']} of {figures['faults']} faults survived; lost {figures['lost']}, duplicated "
        f"{figures['duplicated']}** (of the faults that settled; not settled: "
        f"{', '.join(figures.get('unsettled') or []) or 'none'}). Processes restarted by the harness's supervisor "
        f"after dying on their own (as systemd would): {figures['supervised_restarts'] or 'none'}.",
        "",
    ]
    soak = next((r for r in results if r["fault"] == "soak"), None)
    if soak and soak.get("rss_growth"):
        text += [
            "Memory is judged for the TOM's processes (`readstreams`, the worker, beat): each may grow at most 5% "
            "after the warm-up. Redis and the embedded broker hold what is queued in them (the Celery backlog; "
            "every message, Tansu keeps them in memory) and grow with it by design; `postgres` is the postmaster "
            "only. Growth after warm-up: " + ", ".join(f"{k} {v:+.1%}" for k, v in soak["rss_growth"].items()) + ".",
            "",
        ]
    if plot:
        text += ["## Soak", "", f"![RSS of every process over the soak]({plot})", ""]
    path.write_text("\n".join(text))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--faults", default=",".join(FAULTS), help=f"comma-separated, of {', '.join(FAULTS)}")
    parser.add_argument("--quick", action="store_true", help="seconds per fault (the test suite's version)")
    parser.add_argument("--messages", type=int, help="messages per fault (default 10,000; --quick 300)")
    parser.add_argument("--pause", type=float, help="seconds a paused broker or stopped Redis stays down (60)")
    parser.add_argument("--soak-minutes", type=float, help="length of the soak (30)")
    parser.add_argument("--soak-rate", type=float, help="messages per second of the soak (250, Rubin's mean)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", help="where the private services live (default: a new temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs) afterwards")
    parser.add_argument("--no-report", action="store_true", help="do not rewrite bench/chaos_report.md")
    parser.add_argument("--report-from", metavar="FILE", help="rewrite the report from a run's JSON line, run nothing")
    args = parser.parse_args(argv)
    if args.report_from:
        figures = json.loads(Path(args.report_from).read_text().strip().splitlines()[-1])
        figures["lost"] = sum(r["lost_total"] for r in figures["results"] if r["settled"])
        figures["unsettled"] = [r["fault"] for r in figures["results"] if not r["settled"]]
        plot = "chaos_soak.png" if (BENCH / "chaos_soak.png").exists() else None
        write_report(figures["results"], figures, BENCH / "chaos_report.md", plot)
        print(json.dumps({k: v for k, v in figures.items() if k != "results"}))
        return figures
    plan = Plan.quick() if args.quick else Plan()
    for name, value in (("messages", args.messages), ("pause_s", args.pause), ("soak_minutes", args.soak_minutes),
                        ("soak_rate", args.soak_rate)):  # fmt: skip
        if value is not None:
            setattr(plan, name, value)
    faults = [f for f in args.faults.split(",") if f]
    unknown = set(faults) - set(FAULTS)
    if unknown:
        parser.error(f"unknown faults {sorted(unknown)}; known: {', '.join(FAULTS)}")
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="tom-mma-chaos-"))
    system = ChaosSystem(workdir)
    rng = random.Random(args.seed)
    # a harness stopped with SIGTERM still stops its private services (the finally below)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results: list[dict] = []
    plot = None
    try:
        system.start()
        for name in faults:
            fault = Fault(system, plan, rng)
            result = fault.run(name)
            if name == "soak":
                growth = fault.soak_growth
                result["rss_growth"] = {k: round(v, 4) for k, v in growth.items() if v is not None}
                # the TOM's processes are judged; Redis and the embedded Kafka broker (memory only: it keeps every
                # message in RAM by design) grow with what they hold, and are reported beside them
                judged = [growth.get(name) for name in TOM_PROCESSES]
                result["survived"] = result["survived"] and bool(growth) and all(v is None or v <= 0.05 for v in judged)
                if not args.no_report:
                    soak_plot(fault.soak_samples, BENCH / "chaos_soak.png", min(300.0, plan.soak_minutes * 12))
                    plot = "chaos_soak.png"
            if name == "facility-hang":
                result["stream_slowdown"] = round(fault.stream_slowdown, 2) if fault.stream_slowdown else None
            results.append(result)
            print(
                f"{name}: {'survived' if result['survived'] else 'FAILED'} lost {result['lost_total']} "
                f"duplicated {result['duplicated_total']} ({result['seconds']} s)",
                file=sys.stderr,
                flush=True,
            )
    finally:
        system.stop()
        if not args.keep:
            system.pg.remove()
            shutil.rmtree(workdir, ignore_errors=True)
    figures = {
        "faults": len(results),
        "survived": sum(r["survived"] for r in results),
        "lost": sum(r["lost_total"] for r in results if r["settled"]),
        "unsettled": [r["fault"] for r in results if not r["settled"]],
        "duplicated": sum(r["duplicated_total"] for r in results),
        "supervised_restarts": system.supervised_restarts,
        "run": f"{'--quick' if args.quick else 'full'}: {plan.messages} messages per fault, {plan.pause_s:g} s "
        f"pauses, {plan.kills} kills, soak {plan.soak_minutes:g} min at {plan.soak_rate:g}/s, seed {args.seed}",
        "results": results,
    }
    print(table(results))
    if not args.no_report:
        write_report(results, figures, BENCH / "chaos_report.md", plot)
    print(json.dumps(figures, default=str))
    return figures


if __name__ == "__main__":
    main()
