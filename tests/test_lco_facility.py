"""The real facility path: tomtoolkit's own LCO facility submits an observation rule's request over HTTP.

The LCO Observation Portal (https://observe.lco.global) cannot be reached from here, so its HTTP API is served
by a stand-in on 127.0.0.1 (:class:`Portal`), answering with the documented shapes of the portal's responses
(``/api/instruments/``, ``/api/profile/``, ``/api/requestgroups/validate/``, ``/api/requestgroups/``,
``/api/requests/<id>``). Everything else is real: ``tom_observations.facilities.lco.LCOFacility`` with its
forms, ``requests``, the rule (``TOM_MMA['OBSERVATION_FACILITY']``, ``['OBSERVATION_TYPE']``,
``['OBSERVATION_PARAMETERS']``), ``tom_mma.triggers.submit_trigger`` and the Celery task
``tom_mma.tasks.submit_trigger_task``. The portal's error answers (an HTTP 400 with its validation errors, a
5xx, no answer before the client's timeout) must reach the trigger's status, error and retries.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from celery.exceptions import Retry
from django.test import override_settings
from tom_observations.models import ObservationRecord

from tests.test_derived_factories import AT2017GFO_DEC, AT2017GFO_RA, make_alert
from tom_mma import tasks
from tom_mma.derived import ingest_derived_alert
from tom_mma.models import ObservationTrigger
from tom_mma.triggers import FacilityUnavailable, give_up_trigger, submit_trigger

pytestmark = pytest.mark.django_db

PROPOSAL = "LCO2026B-042"
API_KEY = "stand-in-token"
INSTRUMENT = "1M0-SCICAM-SINISTRO"
#: the client timeout the test gives the facility's HTTP calls (tomtoolkit's LCO facility passes none, see below)
CLIENT_TIMEOUT_S = 0.5

# The portal's answers, in the shapes its API documents (https://developers.lco.global/).
INSTRUMENTS = {
    INSTRUMENT: {
        "type": "IMAGE",
        "class": "1m0",
        "name": "1.0 meter Sinistro",
        "optical_elements": {
            "filters": [
                {"name": "SDSS-rp", "code": "rp", "schedulable": True, "default": True},
                {"name": "SDSS-ip", "code": "ip", "schedulable": True, "default": False},
            ]
        },
        "modes": {
            "readout": {
                "type": "readout",
                "modes": [{"name": "1m0 SciCam Sinistro 1x1 Bin", "code": "full_frame", "schedulable": True}],
                "default": "full_frame",
            },
            "guiding": {
                "type": "guiding",
                "modes": [{"name": "On", "code": "ON", "schedulable": True}, {"name": "Off", "code": "OFF"}],
                "default": "ON",
            },
        },
        "configuration_types": {
            "EXPOSE": {"name": "Exposure", "code": "EXPOSE", "schedulable": True},
            "REPEAT_EXPOSE": {"name": "Exposure Sequence", "code": "REPEAT_EXPOSE", "schedulable": True},
        },
        "default_configuration_type": "EXPOSE",
    }
}
PROFILE = {
    "username": "tom-mma",
    "proposals": [
        {"id": PROPOSAL, "title": "Kilonova follow-up", "current": True},
        {"id": "LCO2019A-001", "title": "An old proposal", "current": False},
    ],
}
#: what the portal says when the request cannot be scheduled (its serializer's message)
NEVER_VISIBLE = (
    "According to the constraints of the request, the target is never visible within the time window. "
    "Check that the target is in the nighttime sky."
)
REQUEST_ID = 3204951


@dataclass
class Portal:
    """A loopback stand-in of the Observation Portal's HTTP API; records what it receives.

    ``fail`` maps a (method, path) to the (status, JSON body) it answers instead of the portal's success;
    ``slow`` is a set of (method, path) that answer only after ``slow_s`` (or when the test ends).
    """

    url: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)
    fail: dict[tuple[str, str], tuple[int, Any]] = field(default_factory=dict)
    slow: set[tuple[str, str]] = field(default_factory=set)
    slow_s: float = 10.0
    released: threading.Event = field(default_factory=threading.Event)
    requestgroups: dict[int, dict[str, Any]] = field(default_factory=dict)
    #: the TOM_MMA settings the test runs with (the rule's facility, observation type and parameters)
    tom_mma: dict[str, Any] = field(default_factory=dict)

    def submitted(self) -> list[dict[str, Any]]:
        """The request groups POSTed to ``/api/requestgroups/``."""
        return [r["json"] for r in self.received if (r["method"], r["path"]) == ("POST", "/api/requestgroups/")]

    def answer(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        key = (method, path.rstrip("/") + "/")
        if key in self.slow:
            self.released.wait(self.slow_s)
        if key in self.fail:
            return self.fail[key]
        if key == ("GET", "/api/instruments/"):
            return 200, INSTRUMENTS
        if key == ("GET", "/api/profile/"):
            return 200, PROFILE
        if key == ("POST", "/api/requestgroups/validate/"):
            return 200, {"request_durations": {"duration": 745.0, "requests": [{"duration": 745.0}]}, "errors": {}}
        if key == ("POST", "/api/requestgroups/"):
            group_id = 1791 + len(self.requestgroups)
            request_id = REQUEST_ID + len(self.requestgroups)
            group = {
                **body,
                "id": group_id,
                "state": "PENDING",
                "submitter": PROFILE["username"],
                "requests": [{**r, "id": request_id, "state": "PENDING"} for r in body["requests"]],
            }
            self.requestgroups[request_id] = group
            return 201, group
        for request_id, group in self.requestgroups.items():
            if key == ("GET", f"/api/requests/{request_id}/"):
                return 200, group["requests"][0]
            if key == ("GET", f"/api/requests/{request_id}/observations/"):
                return 200, []  # not scheduled yet
        return 404, {"detail": "Not found."}


def _handler(portal: Portal) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            portal.received.append(
                {"method": self.command, "path": self.path, "auth": self.headers.get("Authorization"), "json": body}
            )
            status, answer = portal.answer(self.command, self.path, body)
            data = json.dumps(answer).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:
                pass  # the client gave up waiting (the timeout test)

        do_GET = do_POST = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def portal(monkeypatch) -> Iterator[Portal]:
    """The stand-in portal, and the TOM configured to send the rule's requests to it through LCO."""
    portal = Portal()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(portal))
    server.daemon_threads = True
    server.block_on_close = False
    portal.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # loopback only, whatever proxy the environment names
    portal.tom_mma = tom_mma = {
        "OBSERVATION_SCORE_ONLY_WITHOUT_SKYMAP": True,
        "OBSERVATION_FACILITY": "LCO",
        "OBSERVATION_TYPE": "IMAGING",
        "OBSERVATION_WINDOW_HOURS": 36.0,
        "OBSERVATION_PARAMETERS": {
            "proposal": PROPOSAL,
            "ipp_value": 1.05,
            "observation_mode": "NORMAL",
            "c_1_instrument_type": INSTRUMENT,
            "c_1_configuration_type": "EXPOSE",
            "c_1_max_airmass": 1.6,
            "c_1_guide_mode": "ON",
            "c_1_ic_1_exposure_count": 2,
            "c_1_ic_1_exposure_time": 300,
            "c_1_ic_1_readout_mode": "full_frame",
            "c_1_ic_1_filter": "rp",
        },
    }
    with override_settings(
        TOM_FACILITY_CLASSES=["tom_observations.facilities.lco.LCOFacility"],
        FACILITIES={"LCO": {"portal_url": portal.url, "archive_url": portal.url, "api_key": API_KEY}},
        TOM_MMA=tom_mma,
        # the facility's forms cache the portal's instruments and proposals: a cache of this test's own
        CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": portal.url}},
    ):
        yield portal
    portal.released.set()
    server.shutdown()
    server.server_close()


@pytest.fixture
def client_timeout(monkeypatch) -> None:
    """Give the facility's HTTP calls a timeout of CLIENT_TIMEOUT_S.

    tomtoolkit's OCS/LCO facility calls ``requests.request`` (``ocs.make_request``) with no timeout and has no
    setting for one; only that value is added here, the call itself is the library's.
    """
    original = requests.request

    def request_with_timeout(method, url, **kwargs):
        kwargs.setdefault("timeout", CLIENT_TIMEOUT_S)
        return original(method, url, **kwargs)

    monkeypatch.setattr(requests, "request", request_with_timeout)


def claimed_trigger() -> ObservationTrigger:
    """Ingest a kilonova candidate (AT2017gfo, score 0.9): the rule claims a pending trigger."""
    result = ingest_derived_alert(make_alert(kilonova_score=0.9))
    [trigger] = result.triggers
    assert trigger.status == "pending" and trigger.facility == "LCO"
    return trigger


def test_request_submitted_to_the_portal_is_recorded(portal):
    trigger = claimed_trigger()

    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    trigger = submit_trigger(trigger.pk)
    after = dt.datetime.now(dt.UTC)

    [group] = portal.submitted()
    assert group["proposal"] == PROPOSAL and group["name"] == "tom-mma kilonova-score: SSS17a"
    assert group["observation_type"] == "NORMAL" and group["operator"] == "SINGLE"
    [request] = group["requests"]
    [configuration] = request["configurations"]
    assert configuration["instrument_type"] == INSTRUMENT and configuration["type"] == "EXPOSE"
    target = configuration["target"]
    assert (target["name"], target["type"], target["ra"], target["dec"]) == ("SSS17a", "ICRS", AT2017GFO_RA,
                                                                             AT2017GFO_DEC)  # fmt: skip
    [instrument_config] = configuration["instrument_configs"]
    assert instrument_config["optical_elements"] == {"filter": "rp"}
    assert (instrument_config["exposure_time"], instrument_config["exposure_count"]) == (300, 2)
    assert request["location"] == {"telescope_class": "1m0"}
    # the window (not in the parameters): from the submission, OBSERVATION_WINDOW_HOURS long
    [window] = request["windows"]
    start, end = dt.datetime.fromisoformat(window["start"]), dt.datetime.fromisoformat(window["end"])
    assert before <= start <= after and end - start == dt.timedelta(hours=36)
    assert {r["auth"] for r in portal.received} == {f"Token {API_KEY}"}
    paths = [(r["method"], r["path"]) for r in portal.received]
    # validated before it is submitted (by the form, then by the rule), then its status asked for
    assert paths.index(("POST", "/api/requestgroups/validate/")) < paths.index(("POST", "/api/requestgroups/"))
    assert ("GET", f"/api/requests/{REQUEST_ID}") in paths

    assert trigger.status == "submitted" and trigger.error == "" and trigger.attempts == 1
    [record] = trigger.observation_records.all()
    assert record.facility == "LCO" and record.observation_id == str(REQUEST_ID)
    assert record.target == trigger.target and record.status == "PENDING"
    assert record.parameters["c_1_instrument_type"] == INSTRUMENT


def test_portal_refusal_fails_the_trigger_with_its_reason(portal):
    trigger = claimed_trigger()
    reason = {"requests": [{"non_field_errors": [NEVER_VISIBLE]}]}
    portal.fail[("POST", "/api/requestgroups/")] = (400, reason)

    trigger = submit_trigger(trigger.pk)

    assert trigger.status == "failed" and trigger.attempts == 1
    assert "the target is never visible within the time window" in trigger.error
    assert len(portal.submitted()) == 1 and not ObservationRecord.objects.exists()
    assert submit_trigger(trigger.pk).status == "failed" and len(portal.submitted()) == 1  # not sent again


def test_portal_validation_errors_fail_the_trigger_before_submission(portal):
    trigger = claimed_trigger()
    errors = {"requests": [{"windows": [{"non_field_errors": ["The observation window is in the past"]}]}]}
    portal.fail[("POST", "/api/requestgroups/validate/")] = (200, {"request_durations": {}, "errors": errors})

    trigger = submit_trigger(trigger.pk)

    assert trigger.status == "failed" and "The observation window is in the past" in trigger.error
    assert portal.submitted() == [] and not ObservationRecord.objects.exists()


def test_rejected_api_key_fails_the_trigger_with_the_forms_reason(portal):
    # the portal refuses the token: tomtoolkit's forms fall back to no proposals and no instruments, so the
    # configured proposal is not a valid choice (the form's error, not the KeyError its payload then raises)
    trigger = claimed_trigger()
    for key in (("GET", "/api/instruments/"), ("GET", "/api/profile/")):
        portal.fail[key] = (401, {"detail": "Invalid token."})

    trigger = submit_trigger(trigger.pk)

    assert trigger.status == "failed" and trigger.attempts == 1
    assert trigger.error.startswith("FacilityRejected: the LCO form rejected the request: ")
    assert f"{PROPOSAL} is not one of the available choices" in trigger.error
    assert portal.submitted() == [] and not ObservationRecord.objects.exists()


def test_portal_forbidding_the_submission_fails_the_trigger(portal):
    trigger = claimed_trigger()
    forbidden = {"detail": "You do not have permission to perform this action."}
    portal.fail[("POST", "/api/requestgroups/")] = (403, forbidden)

    trigger = submit_trigger(trigger.pk)

    assert trigger.status == "failed" and trigger.error.startswith("ImproperCredentialsException: OCS: ")
    assert "You do not have permission" in trigger.error


@pytest.mark.parametrize("status", [500, 503, 429])
def test_portal_server_error_leaves_the_trigger_pending_until_it_recovers(portal, status):
    trigger = claimed_trigger()
    portal.fail[("POST", "/api/requestgroups/")] = (status, {"detail": "Service unavailable, try again later"})

    with pytest.raises(FacilityUnavailable, match=str(status)):
        submit_trigger(trigger.pk)

    trigger.refresh_from_db()
    assert trigger.status == "pending" and trigger.attempts == 1
    assert trigger.error.startswith("attempt 1: HTTPError: ") and str(status) in trigger.error
    assert not ObservationRecord.objects.exists()

    del portal.fail[("POST", "/api/requestgroups/")]  # the portal recovers
    trigger = submit_trigger(trigger.pk)

    assert trigger.status == "submitted" and trigger.attempts == 2 and trigger.error == ""
    assert len(portal.submitted()) == 2
    [record] = trigger.observation_records.all()
    assert record.observation_id == str(REQUEST_ID)


def test_portal_unreachable_leaves_the_trigger_pending(portal):
    trigger = claimed_trigger()
    with override_settings(FACILITIES={"LCO": {"portal_url": "http://127.0.0.1:9", "api_key": API_KEY}}):
        with pytest.raises(FacilityUnavailable):
            submit_trigger(trigger.pk)
    trigger.refresh_from_db()
    assert trigger.status == "pending" and trigger.error.startswith("attempt 1: ConnectionError: ")


def test_portal_timeout_leaves_the_trigger_pending_and_the_task_fails_it_after_its_retries(portal, client_timeout):
    trigger = claimed_trigger()
    portal.slow.add(("POST", "/api/requestgroups/"))

    # eager mode (no worker): the task leaves the trigger pending for the sweep
    assert tasks.submit_trigger_task.apply(args=[trigger.pk]).get() == "pending"
    trigger.refresh_from_db()
    assert trigger.status == "pending" and trigger.attempts == 1
    assert trigger.error.startswith("attempt 1: ReadTimeout: ") and "timed out" in trigger.error

    # in a worker, on its last retry: the task gives up and fails the trigger with the facility's error
    tasks.submit_trigger_task.push_request(retries=tasks.TRIGGER_RETRIES, is_eager=False, called_directly=False)
    try:
        assert tasks.submit_trigger_task.run(trigger.pk) == "failed"
    finally:
        tasks.submit_trigger_task.pop_request()
    trigger.refresh_from_db()
    assert trigger.status == "failed" and trigger.attempts == 2
    assert trigger.error.startswith(f"the facility did not answer after {tasks.TRIGGER_RETRIES + 1} attempts: ")
    assert "ReadTimeout" in trigger.error
    # the portal received the request twice: after a timeout on the POST, whether the portal took the
    # request is unknown, and the retry sends it again (the stand-in answers neither in time)
    assert len(portal.submitted()) == 2 and not ObservationRecord.objects.exists()
    give_up_trigger(trigger.pk, "again")  # only a pending trigger is given up
    trigger.refresh_from_db()
    assert trigger.error.startswith("the facility did not answer")


def test_fields_the_rule_does_not_give_take_the_lco_forms_initial_values(portal):
    # LCO's forms add most of their fields in __init__ (ipp_value, c_1_max_airmass, c_1_guide_mode, ...):
    # their initial values are the request's defaults too, as in the TOM's own form (a fixed window given in
    # the parameters replaces the rule's)
    given = ("ipp_value", "c_1_max_airmass", "c_1_guide_mode", "c_1_ic_1_exposure_count")
    parameters = {k: v for k, v in portal.tom_mma["OBSERVATION_PARAMETERS"].items() if k not in given}
    parameters.update(start="2027-01-04T02:00:00", end="2027-01-05T02:00:00")
    with override_settings(TOM_MMA={**portal.tom_mma, "OBSERVATION_PARAMETERS": parameters}):
        trigger = submit_trigger(claimed_trigger().pk)

    assert trigger.status == "submitted", trigger.error
    [group] = portal.submitted()
    [configuration] = group["requests"][0]["configurations"]
    assert group["ipp_value"] == 1.05
    assert configuration["constraints"]["max_airmass"] == 1.6
    assert configuration["guiding_config"]["mode"] == "ON"
    assert configuration["instrument_configs"][0]["exposure_count"] == 1
    [window] = group["requests"][0]["windows"]
    assert window == {"start": "2027-01-04T02:00:00+00:00", "end": "2027-01-05T02:00:00+00:00"}


def test_worker_retries_a_timed_out_request_with_backoff(portal, client_timeout):
    trigger = claimed_trigger()
    portal.slow.add(("POST", "/api/requestgroups/validate/"))

    # as in a worker, on its third try: the task asks Celery to try again in 30 s * 2**retries. (The test
    # settings run tasks eagerly, so Celery runs that retry at once, as one more attempt, before raising Retry.)
    retries = 2
    tasks.submit_trigger_task.push_request(
        id="retry-test", args=[trigger.pk], kwargs={}, retries=retries, is_eager=False, called_directly=False
    )
    try:
        with pytest.raises(Retry) as excinfo:
            tasks.submit_trigger_task.run(trigger.pk)
    finally:
        tasks.submit_trigger_task.pop_request()
    assert excinfo.value.when == 30 * 2**retries
    assert isinstance(excinfo.value.exc, FacilityUnavailable) and "ReadTimeout" in str(excinfo.value.exc)
    trigger.refresh_from_db()
    assert trigger.status == "pending" and trigger.attempts == 2 and trigger.error.startswith("attempt 2: ReadTimeout")
    assert portal.submitted() == []  # it timed out validating: nothing was sent twice
