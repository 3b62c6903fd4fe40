"""The embedded broker never signals a process that is not Tansu (a recorded pid may have been reused)."""

from __future__ import annotations

import json
import subprocess
import sys

from tom_mma_broker.embedded import BrokerInfo, EmbeddedKafka


def test_stop_leaves_a_reused_pid_alone(tmp_path):
    # a process that is not Tansu holds the pid the state file records (as after a crash and pid reuse)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        broker = EmbeddedKafka(tmp_path)
        tmp_path.mkdir(exist_ok=True)
        info = BrokerInfo(pid=other.pid, host="127.0.0.1", port=1, log=str(tmp_path / "tansu.log"))
        broker.state_file.write_text(json.dumps(info.__dict__))

        assert broker.status() is None  # not reported as a running broker
        assert not broker.state_file.exists()  # the stale record is dropped
        broker.state_file.write_text(json.dumps(info.__dict__))
        assert broker.stop() is False
        assert other.poll() is None  # still running: it was not sent SIGTERM
        assert not broker.state_file.exists()
    finally:
        other.kill()  # ends only the process this test started, by its own handle
        other.wait()


def test_stop_still_stops_tansu(tmp_path):
    broker = EmbeddedKafka(tmp_path)
    info = broker.start()
    assert broker.status() == info
    assert broker.stop() is True
    assert broker.status() is None
