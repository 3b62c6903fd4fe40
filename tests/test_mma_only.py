"""tom_mma works in a TOM without tom_mma_broker (it reads a broker run elsewhere), in a process of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
import django, json, sys
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from django.apps import apps
assert not apps.is_installed("tom_mma_broker")
from hop.io import Metadata
from hop.models import AvroBlob
from tom_targets.models import Target
from tests.test_derived_factories import alert_dict
from tom_mma.handlers.derived import derived_alert_handler
from tom_mma.handlers.lvk import igwn_gwalert_handler
from tom_mma.models import GWEvent
meta = Metadata(topic="igwn.gwalert", partition=0, offset=0, timestamp=0, key=None, headers=[], _raw=None)
igwn_gwalert_handler(AvroBlob.load_file("tests/data/lvk/MS181101ab-preliminary.avro"), meta)
derived_alert_handler(alert_dict(kilonova_score=0.2), None)
from django.contrib.auth.models import User
from django.test import Client
client = Client()
client.force_login(User.objects.create_user("reader"))
api = {path: client.get(path, HTTP_ACCEPT="application/json") for path in ("/api/mma/gw-events/", "/api/mma/schema/")}
admin_client = Client()
admin_client.force_login(User.objects.create_superuser("admin", "admin@example.org", "pw"))
home = admin_client.get("/mma/")
assert home.status_code == 200 and b"Multi-messenger overview" in home.content, home.status_code
assert b"MS181101ab" in home.content and b'id="tom-mma-home-streams"' not in home.content  # no broker panel
print(json.dumps({"events": list(GWEvent.objects.values_list("superevent_id", flat=True)),
                  "api": [api["/api/mma/gw-events/"].json()["count"], sorted(api["/api/mma/schema/"].json()["paths"])],
                  "targets": list(Target.objects.values_list("name", flat=True)),
                  "modules": sorted(m for m in sys.modules if m.startswith("tom_mma_broker"))}))
"""


@pytest.mark.slow
def test_tom_mma_alone_checks_migrates_and_handles_alerts(tmp_path):
    env = dict(
        os.environ,
        DJANGO_SETTINGS_MODULE="tests.settings_mma_only",
        TOM_MMA_ONLY_DB=str(tmp_path / "db.sqlite3"),
        TOM_MMA_TEST_TMP=str(tmp_path),
        TOM_MMA_TEST_CHILD="",
        DJANGO_ALLOWED_HOSTS="testserver",  # the script's test client
    )
    env.pop("TEST_DATABASE_URL", None)
    check = subprocess.run(
        [sys.executable, "-m", "django", "check", "--fail-level", "WARNING"], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert check.returncode == 0, check.stderr[-3000:]
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    import json

    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["targets"] == ["SSS17a"]
    assert result["modules"] == []  # tom_mma never imports tom_mma_broker
    assert result["events"] == ["MS181101ab"]  # the example TOM's settings take mock events
    count, paths = result["api"]  # the API of tom_mma alone, on the shared router
    assert count == 1 and "/api/mma/gw-events/" in paths and not any(p.startswith("/api/mma-broker/") for p in paths)
