"""Conformance: the decider's alerts equal those of the SNEWS 2.0 coincidence server, message by message.

The reference is ``snews-cs`` 3.0.1 itself, run in-process: its ``CoincidenceDistributor.deal_with_the_cache``
(the cache, the sub-groups and the alert decider) and its ``cs_stats`` false-alarm figure and alert schema.
``snews-cs`` cannot be installed with its dependencies next to tom-mma's (it pins ``hop-client<0.11`` and
``numpy<2``): install it with ``pip install --no-deps snews-cs==3.0.1`` (``requirements/snews-cs.txt``); the
test is skipped without it. Only the modules around the cache that talk to the outside (Kafka publisher,
Slack, e-mail, MongoDB/SQL storage, heartbeat files, the ``.env`` loader) are replaced by recorders here:
they cannot run here and play no part in the decisions.

Sequences where the decider differs on purpose (``docs/snews.md``) are not compared here; they have their
own tests in ``test_snews_decider.py``.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import sys
import types
from pathlib import Path

import pytest

from tom_mma_broker.snews.decider import Decider
from tom_mma_broker.snews.messages import parse_message, parse_time_ns

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("snews_cs") is None, reason="snews-cs 3.0.1 not installed (requirements/snews-cs.txt)"
)

DATA = Path(__file__).parent / "data" / "snews"
_IO_MODULES = ["cs_utils", "snews_bot", "alert_pub", "cs_email", "cs_remote_commands", "snews_hb", "snews_sql"]


class _Publisher:
    """Stands in for snews-cs's hop AlertPublisher: records what it would send."""

    def __init__(self, sent: list):
        self.sent = sent

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def send(self, alert):
        self.sent.append(alert)


@pytest.fixture
def snews_cs(monkeypatch):
    """snews-cs's coincidence module, its I/O neighbours replaced (see the module docstring)."""
    import snews_cs as package

    for name in _IO_MODULES:
        stub = types.ModuleType(f"snews_cs.{name}")
        stub.set_env = lambda env_path=None: None
        for attr in ("AlertPublisher", "send_email", "CommandHandler", "HeartBeat", "Storage"):
            setattr(stub, attr, object)
        monkeypatch.setitem(sys.modules, f"snews_cs.{name}", stub)
        monkeypatch.setattr(package, name, stub, raising=False)
    for name in ("snews_coinc", "cs_alert_schema"):
        monkeypatch.delitem(sys.modules, f"snews_cs.{name}", raising=False)
    module = importlib.import_module("snews_cs.snews_coinc")
    yield module
    for name in ("snews_coinc", "cs_alert_schema"):
        sys.modules.pop(f"snews_cs.{name}", None)


def reference_alerts(module, bodies: list[dict], online: list[str]) -> list[list[tuple]]:
    """snews-cs's alerts for each message of ``bodies`` (in its own message form)."""
    import pandas as pd

    sent: list = []
    server = object.__new__(module.CoincidenceDistributor)
    server.coinc_data, server.test_coinc_data = module.CacheManager(), module.CacheManager()
    server.message_count, server.test_message_count = {}, {}
    server.storage = types.SimpleNamespace(insert_coinc_cache=lambda cache: None)
    server.show_table = server.send_email = server.send_slack = False
    server.heartbeat = types.SimpleNamespace(cache_df=pd.DataFrame({"Detector": online}))
    server.alert = server.test_alert = _Publisher(sent)
    server.alert_schema = module.CoincidenceTierAlert()
    server.server_tag = "tom-mma"
    out = []
    for body in bodies:
        before = len(sent)
        message = {k: v for k, v in body.items() if k not in ("tier", "uuid", "retract_latest_n")}
        message["id"] = body["uuid"]
        if body.get("tier") == "Retraction":
            message["retract_latest"] = body["retract_latest_n"]
        server.deal_with_the_cache(message)
        out.append(sorted(_key(a["alert_type"], a["sub list number"], a["detector_names"], a["neutrino_times"],
                               a["p_values"], a["False Alarm Prob"]) for a in sent[before:]))  # fmt: skip
    return out


def our_alerts(bodies: list[dict], online: list[str]) -> list[list[tuple]]:
    decider = Decider(server_tag="tom-mma")
    base = parse_time_ns("2030-01-01T13:00:00")
    for name in online:
        decider.process(parse_message({"tier": "Heartbeat", "detector_name": name, "detector_status": "ON"}), base)
    out = []
    for i, body in enumerate(bodies):
        decision = decider.process(parse_message(body), base + i * 10**9)
        out.append(sorted(_key(a.alert_type, a.sub_list_number, a.detector_names, a.neutrino_times, a.p_values,
                               a.false_alarm_prob) for a in decision.alerts))  # fmt: skip
    return out


def _key(alert_type, number, names, times, p_values, fap) -> tuple:
    fap = None if fap in (None, "N/A") else float(f"{float(fap):.9e}")  # equal to 10 significant digits
    return (alert_type, int(number), tuple(names), tuple(parse_time_ns(t) for t in times), tuple(p_values), fap)


def body(detector: str, seconds: float, p_val: float = 0.5, is_test: bool = False) -> dict:
    minute, second = divmod(seconds, 60)
    time = f"2030-01-01T12:{30 + int(minute):02d}:{second:09.6f}"
    return {"tier": "CoincidenceTier", "detector_name": detector, "neutrino_time_utc": time, "p_val": p_val,
            "is_test": is_test, "uuid": f"{detector}@{seconds}"}  # fmt: skip


def retract(detector: str) -> dict:
    return {"tier": "Retraction", "detector_name": detector, "retract_latest_n": 1, "uuid": f"retract-{detector}",
            "is_test": False}  # fmt: skip


def _scenarios() -> dict[str, list[dict]]:
    mock = json.loads((DATA / "coincidence_scenarios.json").read_text())
    scenarios = {
        s["id"]: [
            {"tier": "CoincidenceTier", "detector_name": e["detector_name"], "neutrino_time_utc": e["neutrino_time"],
             "p_val": e["p_val"], "is_test": e["is_test"], "uuid": f"{s['id']}-{i}"}
            for i, e in enumerate(s["events"])
        ]
        for s in mock
    }  # fmt: skip
    scenarios.update(
        {
            "pair": [body("A", 10), body("B", 12, 0.1)],
            "three-in-order": [body("A", 10), body("B", 12), body("C", 19.5)],
            "earlier-arrives-late": [body("A", 10), body("B", 7)],
            "two-windows": [body("A", 10), body("B", 22), body("C", 18), body("D", 23)],
            "update-in-window": [body("A", 10), body("B", 12, 0.2), body("B", 13, 0.05) | {"uuid": "B2"}],
            "retraction": [body("A", 10), body("B", 12), body("C", 14), retract("C"), retract("B")],
            "retract-a-lone-message": [body("A", 10), body("B", 40), retract("B")],
            "out-of-order-three": [body("DUNE", 25), body("DS-20K", 17), body("XENONnT", 15)],
        }
    )
    return scenarios


@pytest.mark.parametrize("name", sorted(_scenarios()))
def test_the_alerts_equal_snews_cs_message_by_message(snews_cs, name):
    bodies = _scenarios()[name]
    online = ["A", "B", "C", "D", "E", "DUNE", "DS-20K", "XENONnT"]
    reference = reference_alerts(snews_cs, bodies, online)
    assert our_alerts(bodies, online) == reference
    if name in ("pair", "three-in-order", "retraction"):
        assert any(reference), "the scenario makes alerts (the comparison is not vacuous)"


def test_the_reference_does_compute_a_false_alarm_figure(snews_cs):
    (alerts,) = reference_alerts(snews_cs, [body("A", 10), body("B", 12)], ["A", "B", "C"])[1:]
    (alert,) = alerts
    assert alert[0] == "COINC_MSG" and math.isfinite(alert[-1]) and alert[-1] > 0
