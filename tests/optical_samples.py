"""Real optical alerts for the tests, and the packets built from them where no sample exists.

ZTF 4.x: no public 4.x sample packet exists, so :func:`ztf4_packet` writes a real 3.3 alert with the
real 4.02 schema (``tests/data/optical/ztf-4.02-schema``), adding forced photometry (``fp_hists``).
Rubin: ``lsst-alert-packet`` ships a ``fakeAlert.avro`` per schema version; Fink's Rubin alerts are real.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import fastavro

DATA = Path(__file__).parent / "data"
ZTF_33 = DATA / "ztf" / "472263571115115000.avro"
FINK_ZTF = DATA / "optical" / "fink-ztf-ZTF18abvcdqu.avro"
FINK_LSST = DATA / "optical" / "fink-lsst-3.avro"
ZTF_402_SCHEMA = DATA / "optical" / "ztf-4.02-schema"


def records(path: Path) -> tuple[list[dict], dict]:
    with open(path, "rb") as f:
        reader = fastavro.reader(f)
        return list(reader), reader.writer_schema


def rubin_sample(version: str = "11.0") -> Path:
    import lsst.alert.packet as packet

    major, minor = version.split(".")
    return Path(packet.__file__).parent / "schema" / major / minor / "sample_data" / "fakeAlert.avro"


def ztf_402_schema() -> dict:
    """The ZTF 4.02 alert schema with its named types written out in full (the form a packet carries)."""
    parts = {
        f"ztf.alert.{n}": json.loads((ZTF_402_SCHEMA / f"{n}.avsc").read_text())
        for n in ("cutout", "prv_candidate", "fp_hist", "candidate")
    }
    seen: set[str] = set()

    def inline(node):
        if isinstance(node, str) and node in parts and node not in seen:
            seen.add(node)
            return inline(parts[node])
        if isinstance(node, list):
            return [inline(v) for v in node]
        if isinstance(node, dict):
            return {k: inline(v) for k, v in node.items()}
        return node

    return fastavro.parse_schema(inline(json.loads((ZTF_402_SCHEMA / "alert.avsc").read_text())))


def _conform(value, schema, named):
    """``value`` shaped to ``schema``: missing fields become null (or the type's zero when not nullable)."""
    if isinstance(schema, str) and schema in named:
        schema = named[schema]
    if isinstance(schema, list):
        if value is None and "null" in schema:
            return None
        branch = next(b for b in schema if b != "null")
        return _conform(value, branch, named)
    if isinstance(schema, dict) and schema.get("type") == "record":
        value = value or {}
        return {f["name"]: _conform(value.get(f["name"]), f["type"], named) for f in schema["fields"]}
    if isinstance(schema, dict) and schema.get("type") == "array":
        return [_conform(v, schema["items"], named) for v in value or []]
    if value is None:
        kind = schema if isinstance(schema, str) else schema.get("type")
        return {"string": "", "bytes": b"", "boolean": False, "float": 0.0, "double": 0.0}.get(kind, 0)
    return value


def ztf4_record(base: dict | None = None, fp_hists: list[dict] | None = None) -> dict:
    """A real ZTF alert (3.3) as a 4.02 record, with forced photometry rows (``fp_hists``)."""
    base = base or records(ZTF_33)[0][0]
    schema = ztf_402_schema()
    named = {s["name"]: s for s in _named(schema)}
    record = dict(base, schemavsn="4.02", fp_hists=fp_hists)
    return _conform(record, schema, named)


def _named(schema):
    out = []
    if isinstance(schema, dict):
        if schema.get("type") == "record":
            out.append(schema)
        for v in schema.values():
            out.extend(_named(v))
    elif isinstance(schema, list):
        for v in schema:
            out.extend(_named(v))
    return out


def forced_rows(jd0: float, fluxes: list[tuple[float, float]], fid: int = 1) -> list[dict]:
    """ZTF 4.x forced-photometry rows: (difference flux, its error) in DN at zero point 26.0, a day apart."""
    return [
        {"fid": fid, "pid": 1000 + i, "rfid": 7, "jd": jd0 - 10 + i, "forcediffimflux": f, "forcediffimfluxunc": e,
         "magzpsci": 26.0, "procstatus": "0", "programid": 1, "diffmaglim": 20.5}
        for i, (f, e) in enumerate(fluxes)
    ]  # fmt: skip


def ztf4_packet(record: dict) -> bytes:
    """An Avro container file holding ``record`` in the 4.02 schema."""
    out = io.BytesIO()
    fastavro.writer(out, ztf_402_schema(), [record])
    return out.getvalue()


def confluent_frame(record: dict, version: str = "lsst.v11_0", schema_id: int | None = None) -> bytes:
    """A Rubin alert in the Confluent wire format: 0, the 4-byte schema id, schemaless Avro."""
    from tom_mma.optical.packets import rubin_schema

    major, minor = version.removeprefix("lsst.v").split("_")
    sid = int(major) * 100 + int(minor) if schema_id is None else schema_id
    out = io.BytesIO()
    fastavro.schemaless_writer(out, rubin_schema(version), record)
    return b"\x00" + sid.to_bytes(4, "big") + out.getvalue()


def fink_message(record: dict, schema: dict) -> tuple[bytes, bytes]:
    """(value, key) of Fink's livestream: schemaless Avro, the writer schema as JSON."""
    parsed = fastavro.parse_schema(schema)
    out = io.BytesIO()
    fastavro.schemaless_writer(out, parsed, record)
    key = json.dumps(schema).encode()
    return out.getvalue(), key
