"""The real AT2017gfo photometry, from the Open Kilonova Catalog files shipped with the package.

One Open Kilonova Catalog (OKC, ``astrocatalogs/kne-internal``, MIT) JSON file per paper lists
measurements (``time`` in MJD or JD, ``band``, ``magnitude``, ``e_magnitude`` or asymmetric
``e_lower_magnitude``/``e_upper_magnitude``, ``upperlimit``, ``system``, ``telescope``,
``instrument``, ``source``). :func:`load_photometry` turns the selected ones into
:class:`~tom_mma_broker.schemas.photometry.PhotometryMessage`, sorted by time.

Rules (each documented in ``docs/gw170817-replay.md``):

* only optical and near-infrared bands (:data:`OPTICAL_NIR_BANDS`): the Swift UV filters, HST's
  UV filters, VISIR's 8.9 micron and unfiltered/wide bands (``C``, ``W``, ``w``) are left out;
* only measurements after the merger (the replay's timeline starts there; DLT40's archival
  non-detections are older);
* upper limits only if asked (``PhotometrySelection.upper_limits``);
* a measurement without a known magnitude system (AB or Vega) is skipped;
* the telescope of DECam points, which OKC leaves empty, is the CTIO Blanco 4-m
  (:data:`INSTRUMENT_TELESCOPES`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from tom_mma_broker.schemas.photometry import SYSTEMS, PhotometryMessage

from .notice import DATA_DIR, MERGER_MJD, MOCK_SUPEREVENT_ID

__all__ = [
    "OBJECT_NAME",
    "RA",
    "DEC",
    "OPTICAL_NIR_BANDS",
    "INSTRUMENT_TELESCOPES",
    "PhotometrySelection",
    "DEMO_SELECTION",
    "ALL_SELECTION",
    "available_sources",
    "object_aliases",
    "load_photometry",
]

logger = logging.getLogger(__name__)

OKC_DIR = DATA_DIR / "okc"

OBJECT_NAME = "AT2017gfo"
# 13:09:48.09 -23:22:53.38 (Soares-Santos et al. 2017, via the OKC GW170817 record), J2000/ICRS
RA = 197.450375
DEC = -23.381494

OPTICAL_NIR_BANDS = frozenset(
    {
        # SDSS/DECam/Pan-STARRS-like and Johnson-Cousins
        "u", "g", "r", "i", "z", "y", "Y", "U", "B", "V", "R", "I",
        # near-infrared
        "J", "J1", "H", "K", "Ks",
        # HST wide filters redder than 400 nm
        "F475W", "F606W", "F625W", "F775W", "F814W", "F850W", "F110W", "F160W",
    }
)  # fmt: skip
"""Bands replayed by :data:`ALL_SELECTION` (wavelengths between about 0.33 and 2.3 microns)."""

INSTRUMENT_TELESCOPES = {"DECam": "Blanco 4m"}
"""Telescope of instruments whose OKC points leave it empty."""

_JD_MINUS_MJD = 2400000.5


@dataclass(frozen=True)
class PhotometrySelection:
    """Which measurements to replay.

    Parameters
    ----------
    sources : tuple of str or None
        OKC papers by short name (``"cowperthwaite"`` for ``GW170817-cowperthwaite.json``);
        None for every paper shipped (:func:`available_sources`).
    bands : tuple of str or None
        Bands to keep; None for every band of :data:`OPTICAL_NIR_BANDS`.
    instruments : tuple of str or None
        Instruments to keep; None for all.
    upper_limits : bool
        Keep non-detections too.
    """

    sources: tuple[str, ...] | None = ("cowperthwaite",)
    bands: tuple[str, ...] | None = ("g", "r", "i")
    instruments: tuple[str, ...] | None = ("DECam",)
    upper_limits: bool = False


DEMO_SELECTION = PhotometrySelection()
"""The DECam g/r/i points of Cowperthwaite et al. 2017 (25 points), as the SCiMMA demo replayed."""

ALL_SELECTION = PhotometrySelection(sources=None, bands=None, instruments=None)
"""Every optical/NIR detection of every paper shipped."""


def available_sources(okc_dir: Path = OKC_DIR) -> tuple[str, ...]:
    """Short names of the OKC papers shipped (``GW170817-<name>.json``).

    Examples
    --------
    >>> "cowperthwaite" in available_sources()
    True
    """
    return tuple(sorted(p.stem.removeprefix("GW170817-") for p in okc_dir.glob("GW170817-*.json")))


@lru_cache(maxsize=4)
def object_aliases(okc_dir: Path = OKC_DIR) -> tuple[str, ...]:
    """Other names of AT2017gfo: the TNS internal name, then the survey names in the OKC records.

    Examples
    --------
    >>> object_aliases()
    ('SSS17a', 'DLT17ck', 'PS17egl')
    """
    tns = json.loads((okc_dir / "TNS_2017gfo.json").read_text())
    names = [tns["internal_name"]]
    others: set[str] = set()
    for path in sorted(okc_dir.glob("GW170817-*.json")):
        (record,) = json.loads(path.read_text()).values()
        others.update(a["value"] for a in record.get("alias", []))
    # GW/GRB names are the event's, not the transient's
    skip = {n.casefold() for n in [*names, OBJECT_NAME, f"AT{tns['objname']}"]}
    for name in sorted(others, key=lambda n: (n[:3], n)):
        if name.casefold() not in skip and not name.startswith(("GW", "GRB")):
            names.append(name)
            skip.add(name.casefold())
    return tuple(names)


def _float(value: Any) -> float | None:
    if value in (None, ""):
        return None
    return float(value)


def _error(item: dict[str, Any]) -> float | None:
    error = _float(item.get("e_magnitude"))
    if error is None:
        lower, upper = _float(item.get("e_lower_magnitude")), _float(item.get("e_upper_magnitude"))
        if lower is not None and upper is not None:
            error = 0.5 * (lower + upper)
        else:
            error = lower if upper is None else upper
    return error


def _points_of(path: Path, selection: PhotometrySelection, aliases: Sequence[str], gw_event: str | None):
    (record,) = json.loads(path.read_text()).values()
    bibcodes = {s.get("alias"): s.get("bibcode") or s.get("name") for s in record.get("sources", [])}
    for item in record.get("photometry", []):
        band = item.get("band")
        instrument = item.get("instrument") or None
        upper = str(item.get("upperlimit", "")).lower() == "true"
        if band not in OPTICAL_NIR_BANDS or (selection.bands is not None and band not in selection.bands):
            continue
        if selection.instruments is not None and instrument not in selection.instruments:
            continue
        if upper and not selection.upper_limits:
            continue
        time = float(item["time"])
        unit = item.get("u_time", "MJD")
        if unit == "JD":
            time -= _JD_MINUS_MJD
        elif unit != "MJD":
            logger.debug("%s: skipped a point with time unit %s", path.name, unit)
            continue
        if time < MERGER_MJD:
            continue
        system = item.get("system")
        if system not in SYSTEMS:
            logger.debug("%s: skipped a %s point without a known magnitude system", path.name, band)
            continue
        refs = [bibcodes.get(a.strip()) or a.strip() for a in str(item.get("source", "")).split(",")]
        yield PhotometryMessage.create(
            object_name=OBJECT_NAME,
            aliases=aliases,
            ra=RA,
            dec=DEC,
            mjd=time,
            band=band,
            magnitude=float(item["magnitude"]),
            magnitude_error=None if upper else _error(item),
            upper_limit=upper,
            system=system,
            telescope=item.get("telescope") or INSTRUMENT_TELESCOPES.get(instrument or ""),
            instrument=instrument,
            source=",".join(r for r in refs if r),
            gw_event=gw_event,
        )


def load_photometry(
    selection: PhotometrySelection = DEMO_SELECTION,
    *,
    gw_event: str | None = MOCK_SUPEREVENT_ID,
    okc_dir: Path = OKC_DIR,
) -> list[PhotometryMessage]:
    """The selected AT2017gfo measurements, sorted by time (then ``point_id``), without duplicates.

    Parameters
    ----------
    selection : PhotometrySelection
        Which papers, bands and instruments; :data:`DEMO_SELECTION` by default.
    gw_event : str or None
        The ``gw_event`` of every point (the replay's mock superevent id).
    okc_dir : path
        Where the OKC files are (the package's copy by default).

    Raises
    ------
    ValueError
        If a selected paper is not shipped.

    Examples
    --------
    >>> points = load_photometry()
    >>> len(points), points[0].band, points[0].instrument, points[0].telescope
    (25, 'i', 'DECam', 'Blanco 4m')
    """
    known = available_sources(okc_dir)
    names: Iterable[str] = known if selection.sources is None else selection.sources
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise ValueError(f"unknown photometry source(s) {', '.join(unknown)}; known: {', '.join(known)}")
    aliases = object_aliases(okc_dir)
    points: dict[str, PhotometryMessage] = {}
    for name in sorted(set(names)):
        for point in _points_of(okc_dir / f"GW170817-{name}.json", selection, aliases, gw_event):
            points.setdefault(point.point_id, point)
    return sorted(points.values(), key=lambda p: (p.mjd, p.point_id))
