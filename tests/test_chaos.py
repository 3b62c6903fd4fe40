"""The chaos harness's short version: every fault on the running system, nothing lost, nothing duplicated.

``bench/chaos.py --quick`` runs the whole system on services of its own (PostgreSQL made with ``initdb``,
``redis-server``, the embedded Kafka broker, ``readstreams``, a Celery worker and beat) and injects each fault
while messages are in flight: ``kill -9`` of the consumer, the broker paused, Redis stopped, the worker killed,
PostgreSQL restarted, a facility that hangs then fails, poison messages, and a one-minute soak. The harness
counts lost and duplicated records with its own SQL and its own Kafka consumer against the ids it published;
this test checks those counts and that each fault really happened. Nothing is mocked.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.once,
    pytest.mark.system,
    pytest.mark.slow,
    pytest.mark.skipif(
        not (shutil.which("redis-server") and list(Path("/usr/lib/postgresql").glob("*/bin/initdb"))),
        reason="the harness needs redis-server and PostgreSQL's initdb (scripts/services installs both)",
    ),
]


@pytest.fixture(scope="module")
def chaos(tmp_path_factory) -> dict:
    workdir = tmp_path_factory.mktemp("chaos")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "TOM_MMA_", "TEST_DATABASE"))}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "chaos.py"), "--quick", "--no-report", "--workdir", str(workdir / "w")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-5000:]
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    figures["by_fault"] = {r["fault"]: r for r in figures["results"]}
    figures["stderr"] = proc.stderr
    return figures


def test_every_fault_survived_with_nothing_lost_or_duplicated(chaos):
    assert chaos["faults"] == 8, sorted(chaos["by_fault"])
    failed = {
        name: (r["lost"], r["duplicated"], r["settled"]) for name, r in chaos["by_fault"].items() if not r["survived"]
    }
    assert not failed
    assert chaos["lost"] == 0 and chaos["duplicated"] == 0


def test_each_fault_went_through_the_whole_pipeline(chaos):
    for name, result in chaos["by_fault"].items():
        assert result["settled"], name
        assert result["derived_alerts"] > 0 and result["targets"] > 0, name  # the TOM side was reached
        if name != "soak":
            assert result["observation_requests"] > 0, name  # and the facility


def test_the_faults_really_happened(chaos):
    faults = chaos["by_fault"]
    assert "3 kill -9 of readstreams" in faults["kill9-consumer"]["notes"][0]
    assert "SIGSTOPped for 5 s" in faults["broker-pause"]["notes"][0]
    assert "Redis stopped for 5 s" in faults["redis-stop"]["notes"][0]
    assert "kill -9 of the Celery worker" in faults["worker-kill"]["notes"][0]
    assert "PostgreSQL stopped" in faults["postgres-restart"]["notes"][0]
    # while the facility failed, its requests said why, in words a person can act on (read during the fault: a
    # request that went through later has its error cleared); the stream went on meanwhile
    facility = faults["facility-hang"]
    assert "requests said: " in facility["notes"][0] and "chaos facility" in facility["notes"][0]
    assert facility["stream_slowdown"] is not None
    poison = faults["poison"]
    assert poison["poison"] >= 1 and poison["quarantine_reasons"]
    assert poison["lost"]["poison_not_quarantined"] == 0 and poison["lost"]["wrongly_quarantined"] == 0
    assert faults["soak"]["rss_growth"], "the soak sampled no process"
