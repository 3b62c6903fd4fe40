"""Settings of ``tom_mma_broker``: one dict, ``settings.TOM_MMA_BROKER``, with these defaults.

Every key is listed in ``docs/settings.md`` with its default and the check that guards it.
"""

from __future__ import annotations

from tom_mma.appsettings import AppSettings

__all__ = ["DEFAULTS", "broker_settings"]

DEFAULTS = {
    # Where the embedded broker keeps its pid, port and log. None: <BASE_DIR>/.tom_mma/kafka
    "EMBEDDED_STATE_DIR": None,
    # Topics the embedded broker creates when it starts, next to every topic named in ALERT_STREAMS.
    "EMBEDDED_TOPICS": [],
    # Partitions of each topic the embedded broker creates.
    "EMBEDDED_PARTITIONS": 1,
    # Reliable stream: messages per database transaction, and how long to wait to fill a batch.
    "BATCH_SIZE": 500,
    "BATCH_TIMEOUT_S": 0.2,
    # A handler that raises is retried this many times in all before its message is quarantined.
    "MAX_HANDLER_ATTEMPTS": 3,
    # Pause between two attempts at a failing handler (seconds, doubled each time).
    "HANDLER_RETRY_DELAY_S": 0.05,
    # Reconnect to a lost broker: exponential backoff with full jitter, capped; forever.
    "RECONNECT_BASE_S": 1.0,
    "RECONNECT_MAX_S": 60.0,
    # Keep the decoded content of known formats (JSON, Avro, VOEvent, GCN text) in the archive.
    "STORE_CONTENT": True,
    # librdkafka settings for the reliable stream's consumer, over tom-mma's own (streams.CONSUMER_TUNING),
    # e.g. {"fetch.max.bytes": 104857600}. Offsets and commits are the stream's: leave enable.* alone.
    "CONSUMER_CONFIG": {},
    # Stream health: a reading stream notes that it is listening and each topic's consumer lag this often
    # (seconds); the health page says the TOM is not listening when no note is newer than three of these.
    "HEALTH_HEARTBEAT_S": 30.0,
    # A message larger than this (bytes) is not decoded nor handled: it is archived with its first 4 KiB only and
    # quarantined (stage "size"). 16 MiB is far above an LVK notice with its sky map (a few MB) and a ZTF or
    # Rubin alert with its cutouts (under 100 KB). Checked by tom_mma_broker.E030.
    "MAX_MESSAGE_BYTES": 16 * 1024 * 1024,
    # --- the kilonova pipeline ---
    # Kafka for publishing derived alerts: "embedded" or kafka://host:port; credentials (from the
    # environment) for SCRAM, none for a local broker.
    "KAFKA_URL": "embedded",
    "KAFKA_USERNAME": "",
    "KAFKA_PASSWORD": "",
    # Where derived alerts go, and the score below which a classification yields none (None: the classifier's
    # declared alert floor, from its operating point in the artifact's metadata).
    "RESULTS_TOPIC": "tom-mma.derived",
    "PUBLISH_ENABLED": True,
    "PUBLISH_FLOOR": None,
    # Seconds the outbox publisher waits for the broker to take a batch before trying again later.
    "PUBLISH_TIMEOUT_S": 30.0,
    # How long a message sent but not acknowledged stays with the producer that sent it (which keeps retrying
    # it, deduplicated by the broker) before anyone sends it again (seconds): a broker that stalls for a
    # minute gets each message once, not once per attempt.
    "PUBLISH_LEASE_S": 300.0,
    # Photometry of one object within this cone (arcsec) merges into one candidate.
    "CANDIDATE_MERGE_RADIUS_ARCSEC": 2.0,
    # The classifier artifact, a .skops file with its .json beside it (None: the one shipped with tom-mma);
    # ./manage.py trainclassifier prints the value for the one it builds. Checked by tom_mma_broker.E005.
    "CLASSIFIER_ARTIFACT": None,
    # --- the SNEWS 2.0 coincidence decider (tom_mma_broker.snews) ---
    # Coincidence window, cache lifetime of a message after its arrival, and how long a heartbeat keeps a
    # detector online for the false-alarm figure (snews-cs: 10 s, 120 s, 7 days).
    "SNEWS_WINDOW_S": 10.0,
    "SNEWS_EXPIRY_S": 120.0,
    "SNEWS_HEARTBEAT_WINDOW_S": 7 * 86400.0,
    # The server tag in alerts, and each detector's imitation frequency per second (default one per week).
    "SNEWS_SERVER_TAG": "tom-mma",
    "SNEWS_FALSE_ALARM_RATES": {},
    # Where the decider publishes (through the outbox): coincidence alerts by lane, and no-coincidence messages.
    "SNEWS_ALERT_TOPIC": "tom-mma.snews.alert",
    "SNEWS_TEST_ALERT_TOPIC": "tom-mma.snews.alert-test",
    "SNEWS_FIREDRILL_ALERT_TOPIC": "tom-mma.snews.alert-firedrill",
    "SNEWS_NO_COINCIDENCE_TOPIC": "tom-mma.snews.no-coincidence",
    # Where a multi-messenger link (tom_mma.linking) is published as a derived alert ("" for none).
    "LINK_ALERT_TOPIC": "tom-mma.links",
    # GraceDB, for `ingestsuperevent` backfills (its public API).
    "GRACEDB_URL": "https://gracedb.ligo.org",
}

broker_settings = AppSettings("TOM_MMA_BROKER", DEFAULTS)
