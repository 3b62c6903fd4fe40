"""``ingestsuperevent``: a superevent's notices from GraceDB, through the ingest path.

GraceDB cannot be reached from here: a loopback HTTP server stands in for it, serving the responses GraceDB's
public API documents (``/api/superevents/<id>/files/``: file name -> URL, each version as ``name,N``) built
from the LVK sample notices of the mock superevent MS181101ab.
"""

from __future__ import annotations

import io
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from tom_mma.models import GWEvent
from tom_mma_broker.models import ArchivedAlert, QuarantinedAlert

LVK = Path(__file__).parent / "data" / "lvk"
FILES = {  # GraceDB's file name -> the sample served under it
    "MS181101ab-retraction.json,0": "MS181101ab-retraction.json",
    "MS181101ab-preliminary.json,0": "MS181101ab-preliminary.json",
    "MS181101ab-initial.avro,0": "MS181101ab-initial.avro",
    "MS181101ab-update.avro,0": "MS181101ab-update.avro",
}

pytestmark = pytest.mark.django_db


@pytest.fixture
def gracedb():
    """The stand-in, serving ``files`` (mutable: a test may add a file)."""
    files = dict(FILES)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            prefix = "/api/superevents/MS181101ab/files/"
            base = f"http://127.0.0.1:{self.server.server_port}{prefix}"
            if self.path == prefix:
                listing = {name: base + name for name in files}
                listing.update({name.split(",")[0]: base + name for name in files})  # the latest version
                listing["bayestar.multiorder.fits,0"] = base + "bayestar.multiorder.fits,0"
                body, kind = __import__("json").dumps(listing).encode(), "application/json"
            elif self.path.startswith(prefix) and self.path[len(prefix) :] in files:
                source = files[self.path[len(prefix) :]]
                body = source if isinstance(source, bytes) else (LVK / source).read_bytes()
                kind = "application/octet-stream"
            else:
                self.send_response(404)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", files
    server.shutdown()


def run(*args) -> str:
    out = io.StringIO()
    call_command("ingestsuperevent", *args, stdout=out)
    return out.getvalue()


def test_a_superevent_is_backfilled_in_time_order_and_a_second_run_adds_nothing(gracedb, settings):
    url, _ = gracedb
    settings.TOM_MMA = {"ACCEPT_MOCK_EVENTS": True}
    settings.TOM_MMA_BROKER = {**settings.TOM_MMA_BROKER, "GRACEDB_URL": url}
    out = run("MS181101ab")
    lines = out.splitlines()
    order = [line.split()[1] for line in lines[:-1]]
    assert order == ["MS181101ab-preliminary.json,0", "MS181101ab-initial.avro,0", "MS181101ab-update.avro,0",
                     "MS181101ab-retraction.json,0"]  # fmt: skip
    assert all(line.startswith("handled") for line in lines[:-1]), out
    event = GWEvent.objects.get(superevent_id="MS181101ab")
    assert event.state == "retracted" and event.notices.count() == 4
    assert ArchivedAlert.objects.filter(topic="gracedb.MS181101ab").count() == 4
    again = run("MS181101ab", "--url", url)
    assert again.splitlines()[-1] == "4 notices of MS181101ab: 4 duplicate"


def test_a_bad_notice_is_quarantined_and_graceDB_errors_are_clear(gracedb, settings):
    url, files = gracedb
    settings.TOM_MMA = {"ACCEPT_MOCK_EVENTS": True}
    files["MS181101ab-update-2.json,0"] = b'{"superevent_id": "MS181101ab", "alert_type": "UPDATE"}'
    out = run("MS181101ab", "--url", url)
    assert "quarantined MS181101ab-update-2.json,0" in out and QuarantinedAlert.objects.count() == 1
    with pytest.raises(CommandError, match="GraceDB answered 404"):
        run("S230518h", "--url", url)
    with pytest.raises(CommandError, match="not a superevent id"):
        run("GW170817", "--url", url)
    with pytest.raises(CommandError, match="cannot be reached"):
        run("S230518h", "--url", "http://127.0.0.1:1")
