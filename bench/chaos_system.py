"""The chaos harness's system: services of its own and the TOM's processes (see ``bench/chaos.py``).

PostgreSQL made with ``initdb`` in a temporary folder, a ``redis-server`` on a free port, the embedded Kafka
broker, and ``readstreams``, Celery workers and beat with the settings of ``bench/chaos_settings.py``.
"""

from __future__ import annotations

import glob
import os
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
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chaos_workload import Batch

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
TOPICS = {"gw": "tom-mma.gw170817.gwalert", "photometry": "tom-mma.gw170817.photometry",
          "results": "tom-mma.gw170817.derived"}  # fmt: skip
SUPEREVENT = "MS170817a"
NGC4993 = (197.4487, -23.3839)
#: the queue of the facility tasks when they have one of their own (``chaos_settings``'s routes)
FACILITY_QUEUE = "facilities"


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


# -- the system -------------------------------------------------------------------------------------------------
class ChaosSystem:
    """PostgreSQL, Redis, Kafka, readstreams, a Celery worker and beat, all the harness's own."""

    def __init__(self, workdir: Path, sweep_s: float = 3.0, workers: int = 1, facility_queue: bool = True) -> None:
        """``workers`` solo Celery workers on the default queue; with ``facility_queue``, the facility tasks
        routed to a queue of their own (``facilities``) with a worker of its own, as docs/running.md advises."""
        self.workdir = workdir
        self.workers = workers
        self.facility_queue = facility_queue
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
            TOM_MMA_CHAOS_FACILITY_QUEUE=FACILITY_QUEUE if self.facility_queue else "",
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
        worker = [*celery, "worker", "--pool=solo", "--without-gossip", "--without-mingle", "--without-heartbeat",
                  "-l", "warning"]  # fmt: skip
        self.children = {"readstreams": Child("readstreams", [python, "manage.py", "readstreams"], self.env,
                                              self.workdir / "readstreams.log")}  # fmt: skip
        for n in range(self.workers):
            name = "worker" if n == 0 else f"worker{n + 1}"
            self.children[name] = Child(name, [*worker, "-Q", "celery", "-n", f"{name}@%h"], self.env,
                                        self.workdir / f"{name}.log")  # fmt: skip
        if self.facility_queue:
            self.children["facilities"] = Child("facilities", [*worker, "-Q", FACILITY_QUEUE, "-n", "facilities@%h"],
                                                self.env, self.workdir / "facilities.log")  # fmt: skip
        beat = [*celery, "beat", "-l", "warning", "-s", str(self.workdir / "beat-schedule")]
        self.children["beat"] = Child("beat", beat, self.env, self.workdir / "beat.log")
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
