"""GRB 170817A as a Fermi GBM GCN JSON notice, built from the published facts, marked as a replay.

Fermi GBM triggered at 2017-08-17 12:41:06.47 UTC (trigger 524666471, bn170817529), about 2 s after the
GW170817 merger time (the burst began 1.7 s after it). The on-ground localization was RA 176.8°, Dec -39.8°
with a statistical uncertainty of 11.6° (1σ); the burst was short (GCN Circulars 21505, 21506, 21520;
Goldstein et al. 2017, ApJL 848, L14). The notice follows GCN's Fermi GBM trigger schema
(``gcn.notices.fermi.gbm``); ``additional_info`` and ``alert_tense: archival`` mark it as a replay, and its
``alert_datetime`` is the replay's (a minute after the trigger).
"""

from __future__ import annotations

from typing import Any

__all__ = ["GRB_TRIGGER_TIME", "GRB_TOPIC", "GRB_SCHEMA_ID", "build_grb_notice"]

GRB_TRIGGER_TIME = "2017-08-17T12:41:06.47Z"
GRB_TOPIC = "tom-mma.gw170817.fermi-gbm"
GRB_SCHEMA_ID = "gcn/notices/fermi/gbm/trigger"


def build_grb_notice() -> dict[str, Any]:
    """The GRB 170817A notice (a ground-position Fermi GBM notice, as GCN Kafka sends it as JSON).

    Examples
    --------
    >>> n = build_grb_notice()
    >>> n["trigger_time"], n["ra"], n["dec"], n["ra_dec_error"]
    ('2017-08-17T12:41:06.47Z', 176.8, -39.8, 11.6)
    """
    return {
        "$schema": "https://gcn.nasa.gov/schema/main/gcn/notices/fermi/gbm/trigger.schema.json",
        "mission": "Fermi",
        "instrument": "GBM",
        "messenger": "EM",
        "id": ["524666471", "bn170817529"],
        "record_number": 1,
        "alert_type": "initial",
        "alert_tense": "archival",
        # the replay's choice (a minute after the trigger), not the time of a historical notice
        "alert_datetime": "2017-08-17T12:42:06Z",
        "trigger_time": GRB_TRIGGER_TIME,
        "subtype": "GROUND_POSITION",
        "ra": 176.8,
        "dec": -39.8,
        "ra_dec_error": 11.6,
        "containment_probability": 0.68,
        "systematic_included": False,
        "duration_class": "SHORT",
        "additional_info": "tom-mma replay of GRB 170817A from the published Fermi GBM facts (GCN Circulars "
        "21505, 21506, 21520), not a live notice",
    }
