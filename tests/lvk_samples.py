"""The MS181101ab sample notices (tests/data/lvk, from the LVK user guide) as Avro records and in JSON form."""

from __future__ import annotations

import base64
import copy
from pathlib import Path

import fastavro

DATA = Path(__file__).parent / "data" / "lvk"
SEQUENCE = ["earlywarning", "preliminary", "initial", "update", "ext-update", "retraction"]


def avro_record(name: str) -> dict:
    """The one record of ``MS181101ab-<name>.avro``."""
    with open(DATA / f"MS181101ab-{name}.avro", "rb") as f:
        return next(fastavro.reader(f))


def json_form(record: dict) -> dict:
    """The GCN Kafka JSON form of an Avro record: sky maps base64-encoded."""
    out = copy.deepcopy(record)
    if out.get("event") and out["event"].get("skymap") is not None:
        out["event"]["skymap"] = base64.b64encode(out["event"]["skymap"]).decode()
    coinc = out.get("external_coinc")
    if coinc and coinc.get("combined_skymap") is not None:
        coinc["combined_skymap"] = base64.b64encode(coinc["combined_skymap"]).decode()
    return out
