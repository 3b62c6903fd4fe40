"""Readers of the labelled light curves the classifier is trained and checked on.

- :func:`load_alerce_sne`: the 30 real ZTF supernovae with ALeRCE labels shipped in ``data/`` (MIT).
- :func:`load_okc_photometry`: Open Kilonova Catalog JSON files (e.g. AT2017gfo), used only to check the
  model, never to train it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from importlib import resources
from pathlib import Path

from .features import Observation

__all__ = ["ALERCE_FILE", "ZTF_BANDS", "load_alerce_sne", "load_okc_photometry"]

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
                observations.append(
                    Observation(time, point["band"], magnitude, _float(point.get("e_magnitude")), upper)
                )
    observations.sort(key=lambda o: (o.mjd, o.band))
    return observations
