"""The MS181101ab sample notices (tests/data/lvk, from the LVK user guide) as Avro records and in JSON form."""

from __future__ import annotations

import base64
import copy
import io
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


def burst_record(superevent_id: str = "S230518h", duration: float = 0.0125, central_frequency: float = 240.5) -> dict:
    """The preliminary notice made into a cWB Burst one: Burst fields, a sky map without distance layers."""
    from astropy.io import fits
    from astropy.table import Table

    record = avro_record("preliminary")
    with fits.open(io.BytesIO(record["event"]["skymap"])) as hdus:
        table = Table(hdus[1].data)
    hdu = fits.table_to_hdu(Table({"UNIQ": table["UNIQ"], "PROBDENSITY": table["PROBDENSITY"]}))
    hdu.header.update({"PIXTYPE": "HEALPIX", "ORDERING": "NUNIQ", "CREATOR": "cWB"})
    out = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(out)
    record["superevent_id"] = superevent_id
    record["event"].update(
        group="Burst", pipeline="CWB", search="AllSky", duration=duration, central_frequency=central_frequency,
        classification={}, properties={}, skymap=out.getvalue(),
    )  # fmt: skip
    return record
