"""A stand-in of Fink's ZTF REST API on loopback, for the tests of the ``MMA-Fink`` data service.

Fink's real API (``https://api.ztf.fink-portal.org``) cannot be reached from the machines the tests run on
(no network but the package registries), so this small ``http.server`` in a thread answers in its place,
in the API's documented form (``astrolabsoftware/fink-object-api``, ``apps/routes/v1/ztf/``): ``POST`` of a
JSON body to ``/api/v1/objects``, ``/api/v1/conesearch``, ``/api/v1/latests``, ``/api/v1/sso``; a JSON list
of rows (``pandas.DataFrame.to_json(orient="records")``); a 400 with a text body when a required argument is
missing. The rows are ``tests/data/fink_api/ztf_rows.json`` (Fink's real sample alerts).

``StandIn.fail`` makes it misbehave on demand: ``"503"`` (an HTTP error with an HTML body), ``"not-json"``,
``"not-a-list"`` (a JSON object), ``"slow"`` (answers after :data:`SLOW_S`, past a short client timeout).
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROWS_FILE = Path(__file__).resolve().parent / "data" / "fink_api" / "ztf_rows.json"
SLOW_S = 2.0
REQUIRED = {
    "/api/v1/objects": ("objectId",),
    "/api/v1/conesearch": ("ra", "dec", "radius"),
    "/api/v1/latests": ("class",),
    "/api/v1/sso": ("n_or_d",),
}


def load_rows() -> list[dict]:
    """The sample rows, as the API would send them."""
    return json.loads(ROWS_FILE.read_text())


def _jd(text: str) -> float:
    moment = datetime.fromisoformat(str(text).replace(" ", "T"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp() / 86400.0 + 2440587.5


def _separation_arcsec(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    r1, d1, r2, d2 = map(math.radians, (ra1, dec1, ra2, dec2))
    cos = math.sin(d1) * math.sin(d2) + math.cos(d1) * math.cos(d2) * math.cos(r1 - r2)
    return math.degrees(math.acos(max(-1.0, min(1.0, cos)))) * 3600.0


class StandIn:
    """The server: its URL, the requests it received (path, JSON body), and a failure mode."""

    def __init__(self) -> None:
        self.rows = load_rows()
        self.requests: list[tuple[str, dict]] = []
        self.fail = ""
        self.error_body = "<html><body><h1>Service Unavailable</h1><script>alert(1)</script></body></html>"
        handler = self._handler_class()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="fink-api-standin", daemon=True)

    # -- what the API answers ------------------------------------------------------------------------
    def valid(self) -> list[dict]:
        return [r for r in self.rows if r["d:tag"] == "valid"]

    def answer(self, path: str, body: dict) -> tuple[int, object]:
        missing = [k for k in REQUIRED.get(path, ()) if k not in body]
        if path not in REQUIRED:
            return 404, "not found"
        if missing:
            return 400, str({"status": "error", "text": f"A value for `{missing[0]}` is required."})
        if path == "/api/v1/objects":
            wanted = {name.strip() for name in str(body["objectId"]).split(",")}
            rows = self.rows if body.get("withupperlim") in (True, "True", "true") else self.valid()
            return 200, sorted((r for r in rows if r["i:objectId"] in wanted), key=lambda r: -r["i:jd"])
        if path == "/api/v1/conesearch":
            latest: dict[str, dict] = {}
            for row in self.valid():  # one row per object: its latest alert
                if row["i:objectId"] not in latest or row["i:jd"] > latest[row["i:objectId"]]["i:jd"]:
                    latest[row["i:objectId"]] = row
            ra, dec, radius = float(body["ra"]), float(body["dec"]), float(body["radius"])
            found = [r for r in latest.values() if _separation_arcsec(ra, dec, r["i:ra"], r["i:dec"]) <= radius]
            return 200, found[: int(body.get("n", 1000))]
        if path == "/api/v1/latests":
            wanted = str(body["class"]).removeprefix("(SIMBAD) ")
            rows = [r for r in self.valid() if r["v:classification"] == wanted]
            if "startdate" in body:
                rows = [r for r in rows if r["i:jd"] >= _jd(body["startdate"])]
            if "stopdate" in body:
                rows = [r for r in rows if r["i:jd"] <= _jd(body["stopdate"])]
            rows.sort(key=lambda r: -r["i:jd"])
            return 200, rows[: int(body.get("n", 10))]
        return 200, [r for r in self.valid() if str(r.get("i:ssnamenr")) == str(body["n_or_d"])]

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format, *args):  # noqa: A002  (quiet: the tests read the requests list)
                return

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # a client that gave up waiting ("slow")

            def do_POST(self):  # noqa: N802  (http.server's name)
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except ValueError:
                    body = {}
                standin.requests.append((self.path, body))
                if standin.fail == "slow":
                    time.sleep(SLOW_S)
                if standin.fail == "503":
                    return self._send(503, standin.error_body.encode(), "text/html")
                if standin.fail == "not-json":
                    return self._send(200, b"<html>maintenance</html>", "text/html")
                if standin.fail == "not-a-list":
                    return self._send(200, b'{"status": "ok"}', "application/json")
                status, answer = standin.answer(self.path, body)
                if isinstance(answer, str):
                    return self._send(status, answer.encode(), "text/plain")
                return self._send(status, json.dumps(answer).encode(), "application/json")

        return Handler

    # -- lifetime ------------------------------------------------------------------------------------
    def __enter__(self) -> StandIn:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def running() -> Iterator[StandIn]:
    """A started stand-in (for a fixture), stopped afterwards."""
    with StandIn() as standin:
        yield standin
