"""Photometry rows into ``tom_dataproducts`` on PostgreSQL through ``COPY`` (the optical ingest's bulk path).

A batch's rows are written as text into a temporary staging table, then ``INSERT ... ON CONFLICT DO NOTHING``
into ``PhotometryReducedDatum``'s table, so that a point already stored (its unique constraint) adds nothing.
Below :data:`COPY_MIN_ROWS` rows an ORM insert is as cheap.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.db import connection
from tom_dataproducts.models import PhotometryReducedDatum

__all__ = ["COPY_MIN_ROWS", "PointRow", "copy_photometry", "photometry_fields"]

#: one new photometry row: (target pk, timestamp, the point, telescope, source name, source location)
PointRow = tuple[Any, datetime, Any, str, str, str]


def photometry_fields(row: PointRow) -> dict[str, Any]:
    """The ``PhotometryReducedDatum`` field values of a :data:`PointRow`."""
    target_id, timestamp, point, telescope, source, location = row
    return {
        "target_id": target_id, "timestamp": timestamp, "bandpass": point.band, "brightness": point.magnitude,
        "brightness_error": point.magnitude_error, "limit": point.limit, "unit": f"{point.system} mag",
        "telescope": telescope, "source_name": source, "source_location": location,
        "value": {"mjd": point.mjd, "kind": point.kind, "flux": point.flux, "flux_error": point.flux_error,
                  "system": point.system},
    }  # fmt: skip


# below this many rows an INSERT is as cheap as the COPY's extra statements
COPY_MIN_ROWS = 50
_STAGE = "tom_mma_optical_photometry_stage"
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"})


def _copy_text(value: Any) -> str:
    r"""One value in PostgreSQL's COPY text format.

    Examples
    --------
    >>> [_copy_text(v) for v in (None, "a\tb\\c", 1.5, float("nan"), True, {"k": "é"})]
    ['\\N', 'a\\tb\\\\c', '1.5', 'NaN', 't', '{"k": "\\\\u00e9"}']
    """
    if value is None:
        return "\\N"
    if isinstance(value, str):
        return value.translate(_COPY_ESCAPES)
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, float):
        if value != value:
            return "NaN"
        if value in (math.inf, -math.inf):
            return "Infinity" if value > 0 else "-Infinity"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict | list):
        return json.dumps(value).translate(_COPY_ESCAPES)
    raise TypeError(f"no COPY text for a {type(value).__name__}")


def _num_text(value: float | None) -> str:
    if value is None:
        return "\\N"
    text = repr(float(value))
    # a finite float's repr ends with a digit ("1.5", "1e-05"); "nan", "inf" take the general path
    return text if text[-1].isdigit() else _copy_text(float(value))


def _json_num(value: float | None) -> str:
    """A number as ``json.dumps`` writes it (``repr``; NaN and infinities as its tokens, which PostgreSQL refuses)."""
    if value is None:
        return "null"
    text = repr(float(value))
    return text if text[-1].isdigit() else json.dumps(float(value))


# the columns of PhotometryReducedDatum that _photometry_line writes, in its order
_LINE_COLUMNS = (
    "target_id", "data_product_id", "timestamp", "value", "telescope", "instrument", "source_name",
    "source_location", "reduction_version", "brightness", "brightness_error", "limit", "unit", "bandpass",
    "exposure_time",
)  # fmt: skip


def _photometry_line(row: PointRow, text: Callable[[str], str], quoted: Callable[[str], str]) -> str:
    """One :data:`PointRow` as a line of COPY text in the order of ``_LINE_COLUMNS``.

    ``text`` escapes a string for COPY, ``quoted`` makes it a JSON string (both memoised: a batch has few
    distinct bands, units, kinds and sources).
    """
    target_id, timestamp, p, telescope, source, location = row
    value = (
        f'{{"mjd": {_json_num(p.mjd)}, "kind": {quoted(p.kind)}, "flux": {_json_num(p.flux)}, '
        f'"flux_error": {_json_num(p.flux_error)}, "system": {quoted(p.system)}}}'
    )
    return (
        f"{target_id}\t\\N\t{timestamp.isoformat()}\t{value.translate(_COPY_ESCAPES)}\t"
        f"{text(telescope)}\t\t{text(source)}\t{text(location)}\t\t"
        f"{_num_text(p.magnitude)}\t{_num_text(p.magnitude_error)}\t{_num_text(p.limit)}\t"
        f"{text(p.system + ' mag')}\t{text(p.band)}\t\\N\n"
    )


def copy_photometry(rows: list[PointRow]) -> None:
    """Insert photometry rows (:data:`PointRow`) through PostgreSQL's COPY into a session-local staging table.

    Then ``INSERT ... ON CONFLICT DO NOTHING`` (the unique constraints still skip a concurrent copy of a point).
    The rows are written as COPY text in one buffer, without model instances: a Rubin alert's history is
    hundreds of rows, and building them through the ORM, then psycopg's per-row adaptation, was most of
    a Rubin alert's cost (profiles: ~70 % through the ORM, then ~35 % in model instances and ``write_row``).
    """
    meta = PhotometryReducedDatum._meta
    fields = [f for f in meta.concrete_fields if not f.primary_key]
    table = connection.ops.quote_name(meta.db_table)
    by_name = {f.attname: f for f in fields}
    defaults = {f.attname: f.get_default() for f in fields}
    # the columns _photometry_line writes, with the defaults it writes (empty text, nulls)
    fast = (
        set(by_name) == set(_LINE_COLUMNS)
        and defaults["instrument"] == defaults["reduction_version"] == ""
        and defaults["data_product_id"] is None
        and defaults["exposure_time"] is None
    )
    if fast:  # the columns this module knows (a tomtoolkit with other columns takes the general path)
        names = list(_LINE_COLUMNS)
        # each distinct text escaped once per call (a batch repeats bands, names, sources)
        text = functools.cache(lambda value: value.translate(_COPY_ESCAPES))
        quoted = functools.cache(json.dumps)
        body = "".join([_photometry_line(row, text, quoted) for row in rows])
    else:
        names = [f.attname for f in fields]
        dicts = [photometry_fields(row) for row in rows]
        body = "".join(
            "\t".join([_copy_text(row[n] if n in row else defaults[n]) for n in names]) + "\n" for row in dicts
        )
    columns = ", ".join(connection.ops.quote_name(by_name[n].column) for n in names)
    with connection.cursor() as cursor, connection.wrap_database_errors:
        cursor.execute(f"CREATE TEMP TABLE IF NOT EXISTS {_STAGE} AS SELECT {columns} FROM {table} WITH NO DATA")
        raw = cursor.cursor
        with raw.copy(f"COPY {_STAGE} ({columns}) FROM STDIN") as copy:
            copy.write(body.encode())
        cursor.execute(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {_STAGE} ON CONFLICT DO NOTHING")
        cursor.execute(f"DELETE FROM {_STAGE}")
