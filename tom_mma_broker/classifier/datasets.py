"""Readers of the labelled light curves the classifier is trained and checked on.

- :func:`load_alerce_sne`: the 30 real ZTF supernovae with ALeRCE labels shipped in ``data/`` (MIT).
- :func:`load_okc_photometry`: Open Kilonova Catalog JSON files (e.g. AT2017gfo), used only to check the
  model, never to train it.
- :func:`load_csv`: light curves in the CSV format of ``scorelightcurves`` (``object_id, mjd, band, mag,
  mag_err, upper_limit`` and optionally ``system``).

None of these is used to train the classifier: they are evaluation data.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable
from importlib import resources
from pathlib import Path

from .features import Observation

__all__ = [
    "ALERCE_FILE",
    "CSV_COLUMNS",
    "LightCurveFileError",
    "ZTF_BANDS",
    "load_alerce_sne",
    "load_csv",
    "load_okc_photometry",
]

CSV_COLUMNS = ("object_id", "mjd", "band", "mag", "mag_err", "upper_limit")
"""The required columns of a light-curve CSV file (``system``, AB or Vega, is optional)."""


class LightCurveFileError(ValueError):
    """A light-curve file that cannot be read: the message names the file, line and column."""


ALERCE_FILE = "alerce_30_sne.json"
ZTF_BANDS = {1: "g", 2: "r", 3: "i"}
"""ZTF filter ids."""


def load_alerce_sne(path: str | Path | None = None) -> dict[str, tuple[str, list[Observation]]]:
    """The real ZTF supernovae: ``{objectId: (ALeRCE class, observations sorted by time)}``.

    Parameters
    ----------
    path
        The reduced JSON file; by default the copy shipped in ``tom_mma_broker/classifier/data/``.
    """
    if path is None:
        text = resources.files(__package__).joinpath("data", ALERCE_FILE).read_text(encoding="utf-8")
    else:
        text = Path(path).read_text(encoding="utf-8")
    objects = json.loads(text)["objects"]
    result = {}
    for object_id in sorted(objects):
        entry = objects[object_id]
        observations = [
            Observation(mjd, ZTF_BANDS[fid], mag, err, False) for mjd, fid, mag, err in entry["detections"]
        ] + [Observation(mjd, ZTF_BANDS[fid], limit, None, True) for mjd, fid, limit in entry["non_detections"]]
        observations.sort(key=lambda o: (o.mjd, o.band, o.upper_limit))
        result[object_id] = (entry["class"], observations)
    return result


def _float(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def load_okc_photometry(
    paths: Iterable[str | Path], *, instrument: str | None = None, bands: Iterable[str] | None = None
) -> list[Observation]:
    """Photometry from Open Kilonova Catalog JSON files, sorted by time.

    Parameters
    ----------
    paths
        OKC JSON files (``{name: {"photometry": [...]}}``).
    instrument
        Keep only the points of this instrument (e.g. ``"DECam"``).
    bands
        Keep only these band names (as written in the file).

    Notes
    -----
    Times in JD (``u_time == "JD"``) are converted to MJD; points without a time or magnitude are skipped.
    """
    keep_bands = set(bands) if bands is not None else None
    observations = []
    for path in paths:
        for event in json.loads(Path(path).read_text(encoding="utf-8")).values():
            for point in event.get("photometry", []):
                if instrument is not None and point.get("instrument") != instrument:
                    continue
                if keep_bands is not None and point.get("band") not in keep_bands:
                    continue
                time, magnitude = _float(point.get("time")), _float(point.get("magnitude"))
                if time is None or magnitude is None or "band" not in point:
                    continue
                if point.get("u_time") == "JD":
                    time -= 2400000.5
                upper = str(point.get("upperlimit", False)).lower() in ("true", "1")
                system = point.get("system") or None
                observations.append(
                    Observation(time, point["band"], magnitude, _float(point.get("e_magnitude")), upper, system)
                )
    observations.sort(key=lambda o: (o.mjd, o.band))
    return observations


_TRUE = {"1", "true", "t", "yes", "y"}
_FALSE = {"0", "false", "f", "no", "n", ""}


def load_csv(path: str | Path) -> dict[str, list[Observation]]:
    """Light curves from a CSV file: ``{object_id: observations sorted by time}``, objects in file order.

    Columns (a header line, any order, extra columns ignored): ``object_id``, ``mjd``, ``band`` (as surveys
    write it), ``mag``, ``mag_err`` (may be empty), ``upper_limit`` (1 for a non-detection whose ``mag`` is
    the limit, 0 otherwise) and optionally ``system`` (``AB``, ``Vega`` or empty for the band's usual one).

    Raises
    ------
    LightCurveFileError
        A missing column, or a value that is not a number (the message names the line).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "lc.csv"
    >>> header = "object_id,mjd,band,mag,mag_err,upper_limit\\n"
    >>> _ = f.write_text(header + "A,60000.5,ztfg,19.1,0.05,0\\nA,59999.5,ztfg,20.5,,1\\n")
    >>> [(o.mjd, o.band, o.upper_limit) for o in load_csv(f)["A"]]
    [(59999.5, 'ztfg', True), (60000.5, 'ztfg', False)]
    """
    path = Path(path)
    result: dict[str, list[Observation]] = {}
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise LightCurveFileError(f"{path}: missing column(s) {', '.join(missing)} (need {', '.join(CSV_COLUMNS)})")
        for line, row in enumerate(reader, start=2):
            try:
                mjd, mag = float(row["mjd"]), float(row["mag"])
                err = float(row["mag_err"]) if (row["mag_err"] or "").strip() else None
            except ValueError as exc:
                raise LightCurveFileError(f"{path}, line {line}: {exc}") from None
            flag = (row["upper_limit"] or "").strip().lower()
            if flag not in _TRUE | _FALSE:
                raise LightCurveFileError(
                    f"{path}, line {line}: upper_limit must be 0 or 1, not {row['upper_limit']!r}"
                )
            if not (math.isfinite(mjd) and math.isfinite(mag)):
                raise LightCurveFileError(f"{path}, line {line}: mjd and mag must be finite")
            system = (row.get("system") or "").strip() or None
            obs = Observation(mjd, row["band"].strip(), mag, err, flag in _TRUE, system)
            result.setdefault(row["object_id"].strip(), []).append(obs)
    for observations in result.values():
        observations.sort(key=lambda o: o.mjd)
    return result
