"""``TOPIC_HANDLERS`` of GCN Kafka JSON notices of GRBs, X-ray transients and neutrinos, and of SNEWS alerts.

In the TOM's ``ALERT_STREAMS`` (GCN Kafka: see ``docs/gcn.md``)::

    "TOPIC_HANDLERS": {
        "gcn.notices.fermi.gbm.*": "tom_mma.handlers.gcn.fermi_gbm_handler",
        "gcn.notices.swift.bat.guano": "tom_mma.handlers.gcn.swift_bat_guano_handler",
        "gcn.notices.svom.voevent.eclairs": "tom_mma.handlers.gcn.svom_eclairs_handler",
        "gcn.notices.einstein_probe.wxt.alert": "tom_mma.handlers.gcn.einstein_probe_wxt_handler",
        "gcn.notices.icecube.gold_bronze_track_alerts": "tom_mma.handlers.gcn.icecube_track_handler",
        "gcn.notices.icecube.lvk_nu_track_search": "tom_mma.handlers.gcn.icecube_lvk_nu_handler",
        "gcn.notices.superk.sn_alert": "tom_mma.handlers.gcn.superk_sn_handler",
        "gcn.notices.snews2.alert": "tom_mma.handlers.gcn.gcn_snews_handler",
        "tom-mma.snews.alert": "tom_mma.handlers.gcn.snews_alert_handler",
    }

``gcn_notice_handler`` takes any of these kinds (told apart by the notice's ``$schema``). Each handler
parses the notice into a frozen :class:`tom_mma.transients.notices.ParsedNotice` and calls one service,
:func:`tom_mma.transients.events.ingest_transient_notice`; a bad notice raises
:class:`~tom_mma.transients.notices.TransientNoticeError` (the reliable stream quarantines it).
"""

from __future__ import annotations

from typing import Any

from tom_mma.transients.events import TransientResult, ingest_transient_notice
from tom_mma.transients.notices import TransientNoticeError, parse_notice

__all__ = [
    "gcn_notice_handler",
    "fermi_gbm_handler",
    "swift_bat_guano_handler",
    "svom_eclairs_handler",
    "einstein_probe_wxt_handler",
    "icecube_track_handler",
    "icecube_lvk_nu_handler",
    "superk_sn_handler",
    "gcn_snews_handler",
    "snews_alert_handler",
]


def _payload(alert: Any) -> Any:
    if hasattr(alert, "content"):
        return alert.content
    value = getattr(alert, "value", None)
    if callable(value):  # a confluent_kafka.Message (tom-alertstreams' GCN stream passes it alone)
        payload = value()
        if payload is None:
            raise TransientNoticeError("an empty Kafka message (no value)")
        return payload
    return alert


def _handle(alert: Any, source: str | None) -> TransientResult:
    return ingest_transient_notice(parse_notice(_payload(alert), source))


def gcn_notice_handler(alert: Any, metadata: Any = None) -> TransientResult:
    """Any GCN JSON notice kind this module knows (detected from the notice)."""
    return _handle(alert, None)


def fermi_gbm_handler(alert: Any, metadata: Any = None) -> TransientResult:
    """Fermi GBM triggers (``gcn.notices.fermi.gbm.*``: alert, flight, ground, final positions)."""
    return _handle(alert, "fermi-gbm")


def swift_bat_guano_handler(alert: Any, metadata: Any = None) -> TransientResult:
    """Swift BAT-GUANO (with its retractions)."""
    return _handle(alert, "swift-bat-guano")


def svom_eclairs_handler(alert: Any, metadata: Any = None) -> TransientResult:
    """SVOM ECLAIRs triggers."""
    return _handle(alert, "svom-eclairs")


def einstein_probe_wxt_handler(alert: Any, metadata: Any = None) -> TransientResult:
    """Einstein Probe WXT alerts."""
    return _handle(alert, "ep-wxt")


def icecube_track_handler(alert: Any, metadata: Any = None) -> TransientResult:
    """IceCube gold and bronze track alerts."""
    return _handle(alert, "icecube-track")


def icecube_lvk_nu_handler(alert: Any, metadata: Any = None) -> TransientResult:
    """IceCube's neutrino track search of an LVK superevent (linked to that superevent by name)."""
    return _handle(alert, "icecube-lvk-nu")


def superk_sn_handler(alert: Any, metadata: Any = None) -> TransientResult:
    """Super-Kamiokande supernova alerts."""
    return _handle(alert, "superk-sn")


def snews_alert_handler(alert: Any, metadata: Any = None) -> TransientResult:
    """SNEWS 2.0 coincidence alerts (the decider's topic): a neutrino event, updated and retracted."""
    return _handle(alert, "snews")


def gcn_snews_handler(alert: Any, metadata: Any = None) -> TransientResult:
    """SNEWS 2.0 coincidence alerts as GCN notices (``gcn.notices.snews2.alert``): a neutrino event."""
    return _handle(alert, "snews-gcn")
