"""tom-mma as its users get it: the built wheel in a fresh virtual environment, a TOM made by tomtoolkit's own
``tom_setup``, the README's install section pasted as it is, the real embedded broker, a real Celery worker on
Redis with eager mode off.

This is the path a new user takes, so nothing of this repository's own example TOM or test settings is used:
the README is read by the test, so that it cannot drift from what works. It runs once per ``scripts/test``
(the PostgreSQL leg: the stock TOM keeps its own SQLite database, whatever the suite's database is).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
REDIS_DB = int(os.environ.get("TOM_MMA_TEST_REDIS_DB", "13")) + 1  # a database of its own, emptied

pytestmark = [pytest.mark.slow, pytest.mark.once]


def readme_install_blocks() -> dict[str, str]:
    """The README's install section: each Python block by the file its first line names (``# settings.py``)."""
    text = README.read_text()
    section = text.split("## Install into an existing TOM", 1)[1].split("\n## ", 1)[0]
    blocks: dict[str, str] = {}
    for body in re.findall(r"```python\n(.*?)```", section, re.S):
        first, _, rest = body.partition("\n")
        match = re.fullmatch(r"# (\S+\.py)", first.strip())
        assert match, f"a README install block does not start with the file it goes into: {first!r}"
        blocks[match.group(1)] = rest
    return blocks


def test_the_readme_names_a_file_for_every_install_block():
    assert set(readme_install_blocks()) == {"settings.py", "urls.py", "celery.py", "__init__.py"}


@pytest.fixture(scope="session")
def dist(tmp_path_factory) -> Path:
    """The sdist and wheel built from this checkout, as ``python -m build`` makes them."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)],
        check=True, capture_output=True, cwd=ROOT,
    )  # fmt: skip
    return out


def _wheel(dist: Path) -> Path:
    [wheel] = dist.glob("tom_mma-*-py3-none-any.whl")
    return wheel


def test_the_wheel_carries_every_data_file_of_both_apps(dist):
    tracked = subprocess.run(
        ["git", "ls-files", "tom_mma", "tom_mma_broker"], check=True, capture_output=True, text=True, cwd=ROOT
    ).stdout.split()
    data_files = [path for path in tracked if not path.endswith(".py")]
    assert len(data_files) > 20  # templates, the classifier artifact, the GW170817 sky map and photometry
    names = set(zipfile.ZipFile(_wheel(dist)).namelist())
    assert [path for path in data_files if path not in names] == []
    [sdist] = dist.glob("tom_mma-*.tar.gz")
    check = subprocess.run([sys.executable, "-m", "twine", "check", str(_wheel(dist)), str(sdist)],
                           capture_output=True, text=True)  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr


class StockTOM:
    """A TOM made by ``tom_setup`` in its own virtual environment, driven through its ``manage.py``."""

    def __init__(self, root: Path):
        self.root = root
        self.venv = root / "venv"
        self.project = root / "mytom"
        self.package = self.project / "mytom"
        self.env = {
            key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "TOM_MMA_", "VIRTUAL"))
        }
        self.env.update(
            HOPSKOTCH_URL="embedded",
            CELERY_BROKER_URL=f"redis://127.0.0.1:6379/{REDIS_DB}",
            PATH=f"{self.venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        )

    def bin(self, name: str) -> str:
        return str(self.venv / "bin" / name)

    def run(self, *args: str, check: bool = True, timeout: float = 600, **env: str) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            list(args), cwd=self.project if self.project.exists() else self.root, env={**self.env, **env},
            capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
            )
        return proc

    def manage(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return self.run(self.bin("python"), "manage.py", *args, **kwargs)

    def start(self, name: str, *args: str) -> subprocess.Popen:
        log = open(self.root / f"{name}.log", "w")
        return subprocess.Popen(list(args), cwd=self.project, env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text()[-4000:]

    def count(self, sql: str) -> int:
        with sqlite3.connect(self.project / "db.sqlite3", timeout=30) as db:
            return db.execute(sql).fetchone()[0]


API_SCRIPT = """
import json
from django.contrib.auth.models import User
from django.test import Client
client = Client(SERVER_NAME="localhost")
client.force_login(User.objects.create_superuser("api-reader", "reader@example.org", "pw"))
paths = ["/api/mma/gw-events/MS170817a/", "/api/mma/gw-events/MS170817a/candidates/", "/api/mma-broker/archive/",
         "/api/mma/schema/"]
answers = {path: client.get(path, HTTP_ACCEPT="application/json") for path in paths}
print(json.dumps({path: [r.status_code, r.json() if r.status_code == 200 else r.content.decode()[:2000]]
                  for path, r in answers.items()}))
"""


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@pytest.mark.redis
@pytest.mark.kafka
def test_a_stock_tom_gets_tom_mma_from_the_wheel_and_the_readme(dist, tmp_path):
    import redis

    redis.Redis.from_url(f"redis://127.0.0.1:6379/{REDIS_DB}").flushdb()
    tom = StockTOM(tmp_path)
    # a fresh virtual environment with the wheel and the embedded broker, as the README installs them
    tom.run(sys.executable, "-m", "venv", str(tom.venv))
    tom.run(tom.bin("pip"), "install", "-q", str(_wheel(dist)))
    tom.run(tom.bin("pip"), "install", "-q", "--require-hashes", "-r", str(ROOT / "requirements" / "embedded.txt"))
    # tomtoolkit's own tom_setup, answered as a person would: continue, default app, SIDEREAL, no hints
    tom.run(tom.bin("django-admin"), "startproject", "mytom")  # in the folder run() starts in
    settings = tom.package / "settings.py"
    settings.write_text(settings.read_text().replace("'django.contrib.staticfiles',",
                                                     "'django.contrib.staticfiles',\n    'tom_setup',"))  # fmt: skip
    subprocess.run([tom.bin("python"), "manage.py", "tom_setup"], cwd=tom.project, env=tom.env, input="y\n\n1\nn\n",
                   capture_output=True, text=True, check=True, timeout=300)  # fmt: skip
    # the README's install section, pasted as it is
    for name, block in readme_install_blocks().items():
        path = tom.package / name
        path.write_text((path.read_text() if path.exists() else "") + "\n" + block)
    # and, as the README says, mock events taken, to try it with the GW170817 replay (a mock event)
    text = settings.read_text()
    assert 'TOM_MMA = {"ACCEPT_MOCK_EVENTS": False}' in text
    settings.write_text(
        text.replace('TOM_MMA = {"ACCEPT_MOCK_EVENTS": False}', 'TOM_MMA = {"ACCEPT_MOCK_EVENTS": True}')
    )

    assert "no issues" in tom.manage("check").stdout
    tom.manage("migrate", "--no-input")
    started = tom.manage("kafkabroker", "start").stdout
    assert "igwn.gwalert" in started and "my-tom.photometry" in started and "my-tom.derived" in started
    stream = tom.start("readstreams", tom.bin("python"), "manage.py", "readstreams")
    worker = tom.start("worker", tom.bin("celery"), "-A", "mytom", "worker", "--pool=solo", "--without-gossip",
                       "--without-mingle", "--without-heartbeat", "-l", "info")  # fmt: skip
    try:
        # an LVK notice (GW170817's real sky map, as a mock event) and AT2017gfo's photometry, to the broker
        tom.manage("replaygw170817", "--url", "embedded", "--gw-topic", "igwn.gwalert",
                   "--photometry-topic", "my-tom.photometry", "--speed", "0")  # fmt: skip
        wanted = {
            "event": "select count(*) from tom_mma_gwevent where superevent_id = 'MS170817a'",
            "classification": "select count(*) from tom_mma_broker_classification",
            "derived alert": "select count(*) from tom_mma_derivedalertrecord",
            "ranked target": "select count(*) from tom_mma_eventcandidate",
            "observation request": "select count(*) from tom_observations_observationrecord r join "
            "tom_targets_basetarget t on r.target_id = t.id where t.name = 'AT2017gfo'",
        }
        seen: dict[str, int] = {}
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            seen = {name: tom.count(sql) for name, sql in wanted.items()}
            if all(seen.values()):
                break
            for name, proc in (("readstreams", stream), ("worker", worker)):
                assert proc.poll() is None, f"{name} exited:\n{tom.log(name)}"
            time.sleep(3)
        assert all(seen.values()), f"{seen}\nreadstreams:\n{tom.log('readstreams')}\nworker:\n{tom.log('worker')}"
        time.sleep(5)  # what arrives late must not double anything
        assert tom.count(wanted["observation request"]) == 1
        assert tom.count(wanted["event"]) == 1
        assert tom.count("select count(*) from tom_targets_basetarget where name = 'AT2017gfo'") == 1
        # the REST API, on tomtoolkit's shared router with no urls.py line of tom-mma's own
        api = json.loads(tom.manage("shell", "-c", API_SCRIPT).stdout.strip().splitlines()[-1])
        status = {path: code for path, (code, _) in api.items()}
        assert set(status.values()) == {200}, api
        assert api["/api/mma/gw-events/MS170817a/"][1]["state"] == "active"
        ranked = [row["target_name"] for row in api["/api/mma/gw-events/MS170817a/candidates/"][1]["results"]]
        assert "AT2017gfo" in ranked
        assert "MS170817a" in {row["subject"] for row in api["/api/mma-broker/archive/"][1]["results"]}
        assert "/api/mma-broker/archive/" in api["/api/mma/schema/"][1]["paths"]
    finally:
        _stop(stream)
        _stop(worker)
        tom.manage("kafkabroker", "stop", check=False)

    # without the README's Celery lines, tom-mma's check stops the TOM before work can be lost
    (tom.package / "celery.py").unlink()
    init = tom.package / "__init__.py"
    init.write_text("\n".join(line for line in init.read_text().splitlines() if "celery" not in line))
    settings.write_text("\n".join(line for line in settings.read_text().splitlines()
                                  if not line.startswith("CELERY_BROKER_URL")))  # fmt: skip
    del tom.env["CELERY_BROKER_URL"]  # Celery's default app would read it from the environment
    for command in ("check", "readstreams"):
        failed = tom.manage(command, check=False, timeout=120)
        assert failed.returncode != 0 and "tom_mma.E070" in failed.stderr, failed.stderr[-3000:]
    shutil.rmtree(tom.venv, ignore_errors=True)  # 1 GB: not kept among the test's files
