"""Write ``ztf_rows.json``: rows as Fink's ZTF REST API returns them, made of Fink's real sample alerts.

Run once, by hand, from the repository root with the shared sample data beside it::

    python tests/data/fink_api/make_rows.py /path/to/shared/data/fink

It reads ``fink-broker-sample-alert-{1,2,3,4}.avro`` (ZTF alerts as Fink redistributes them, Apache-2.0,
``astrolabsoftware/fink-client`` ``datatest/``) and writes one row per alert and per earlier measurement of
each, with the API's column names: the alert's candidate and each earlier detection (``prv_candidates`` with
``magpsf``) as ``d:tag`` ``valid``, each earlier non-detection as ``upperlim`` (``withupperlim``). Fink's
cross-match (``cdsxmatch``) is the alert's, and ``v:classification`` follows Fink's rule for a known SIMBAD
cross-match (the SIMBAD class). Nothing else is invented.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import fastavro

COLUMNS = ("objectId", "candid", "ra", "dec", "jd", "fid", "magpsf", "sigmapsf", "diffmaglim", "ssnamenr")


def rows_of(record: dict) -> list[dict]:
    cdsxmatch = record.get("cdsxmatch") or "Unknown"
    classification = cdsxmatch if cdsxmatch not in ("Unknown", "Fail", "") else "Unknown"
    measurements = [record["candidate"], *(record.get("prv_candidates") or [])]
    rows = []
    for m in measurements:
        row = {f"i:{c}": m.get(c) for c in COLUMNS if c != "objectId"}
        row["i:objectId"] = record["objectId"]
        row["d:tag"] = "valid" if m.get("magpsf") is not None else "upperlim"
        row["d:cdsxmatch"] = cdsxmatch
        row["v:classification"] = classification
        rows.append(row)
    return rows


def main(folder: str) -> None:
    rows = []
    for n in (1, 2, 3, 4):
        with open(Path(folder) / f"fink-broker-sample-alert-{n}.avro", "rb") as handle:
            for record in fastavro.reader(handle):
                rows += rows_of(record)
    out = Path(__file__).with_name("ztf_rows.json")
    out.write_text(json.dumps(rows, indent=0, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
