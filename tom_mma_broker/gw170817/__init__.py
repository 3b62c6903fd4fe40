"""The GW170817 replay: the historic event as a source of alerts, for demos and tests.

An LVK notice in today's ``igwn.alerts`` Avro schema with the real BAYESTAR sky map (mock
superevent ``MS170817a``), then the real AT2017gfo photometry, one ``tom-mma/photometry/v1``
message per measurement, in time order and at a chosen speed. Every message carries the header
``x-tom-mma-replay: GW170817``. See ``docs/gw170817-replay.md``.

Examples
--------
>>> from tom_mma_broker.gw170817 import replay_messages
>>> messages = replay_messages()
>>> [m.content["alert_type"] for m in messages if m.stream == "gw"]
['PRELIMINARY', 'INITIAL']
"""

from .notice import (
    FAR_HZ,
    MERGER_MJD,
    MERGER_TIME,
    MOCK_SUPEREVENT_ID,
    NOTICE_SCHEMA_ID,
    build_notice,
    gw170817_skymap,
    igwn_alert_schema,
    notice_from_avro,
    notice_to_avro,
    validate_notice,
)
from .photometry import (
    ALL_SELECTION,
    DEMO_SELECTION,
    OBJECT_NAME,
    PhotometrySelection,
    available_sources,
    load_photometry,
)
from .replay import (
    DEFAULT_GW_TOPIC,
    DEFAULT_PHOTOMETRY_TOPIC,
    DEFAULT_SPEED,
    GW_STREAM,
    NOTICE_SCHEDULE,
    PHOTOMETRY_STREAM,
    REPLAY_HEADER,
    REPLAY_VALUE,
    SCHEMA_HEADER,
    ReplayMessage,
    ReplayProgress,
    publish,
    replay,
    replay_messages,
)

__all__ = [
    "ALL_SELECTION",
    "DEFAULT_GW_TOPIC",
    "DEFAULT_PHOTOMETRY_TOPIC",
    "DEFAULT_SPEED",
    "DEMO_SELECTION",
    "FAR_HZ",
    "GW_STREAM",
    "MERGER_MJD",
    "MERGER_TIME",
    "MOCK_SUPEREVENT_ID",
    "NOTICE_SCHEDULE",
    "NOTICE_SCHEMA_ID",
    "OBJECT_NAME",
    "PHOTOMETRY_STREAM",
    "REPLAY_HEADER",
    "REPLAY_VALUE",
    "SCHEMA_HEADER",
    "PhotometrySelection",
    "ReplayMessage",
    "ReplayProgress",
    "available_sources",
    "build_notice",
    "gw170817_skymap",
    "igwn_alert_schema",
    "load_photometry",
    "notice_from_avro",
    "notice_to_avro",
    "publish",
    "replay",
    "replay_messages",
    "validate_notice",
]
