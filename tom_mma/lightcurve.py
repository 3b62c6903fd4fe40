"""A Target's light curve and its kilonova score over time, on one plot, drawn on the server.

Drawn with matplotlib's object API on an Agg/SVG canvas (no ``pyplot``, no global backend, no CDN): the page
shows it as an ``<img>`` of an SVG data URI, so that no text inside it (band names come from alerts) can run as
script in the page.
"""

from __future__ import annotations

import base64
import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass

from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.figure import Figure

__all__ = [
    "LightCurvePoint",
    "ScorePoint",
    "cached_lightcurve_svg",
    "lightcurve_figure",
    "lightcurve_svg",
    "svg_data_uri",
]

_BAND_COLOURS = {"g": "#2ca02c", "r": "#d62728", "i": "#8c564b", "z": "#7f7f7f", "u": "#9467bd", "y": "#bcbd22"}
_SCORE_COLOUR = "#1f3b73"
_CACHE_SECONDS = 3600


@dataclass(frozen=True)
class LightCurvePoint:
    """A photometry point: MJD, band, magnitude (or limit) and its error."""

    mjd: float
    band: str
    magnitude: float
    error: float | None = None
    upper_limit: bool = False


@dataclass(frozen=True)
class ScorePoint:
    """A kilonova score at the MJD of the latest point it was computed from."""

    mjd: float
    score: float
    retracted: bool = False


def lightcurve_figure(points: Sequence[LightCurvePoint], scores: Sequence[ScorePoint]) -> Figure:
    """Magnitudes per band (left axis, brighter up) and the kilonova score (right axis, 0–1) against MJD."""
    fig = Figure(figsize=(8, 3.6), layout="constrained")
    FigureCanvasSVG(fig)
    ax = fig.add_subplot(1, 1, 1)
    bands = sorted({p.band for p in points})
    for band in bands:
        colour = _BAND_COLOURS.get(band.strip().lower()[-1:] or "?", None)
        detections = [p for p in points if p.band == band and not p.upper_limit]
        limits = [p for p in points if p.band == band and p.upper_limit]
        if detections:
            ax.errorbar(
                [p.mjd for p in detections],
                [p.magnitude for p in detections],
                yerr=[p.error or 0.0 for p in detections],
                fmt="o",
                ms=4,
                color=colour,
                label=band,
            )
        if limits:
            ax.plot(
                [p.mjd for p in limits],
                [p.magnitude for p in limits],
                "v",
                ms=5,
                color=colour,
                alpha=0.5,
                label=f"{band} limit",
            )
    if points:
        ax.invert_yaxis()  # brighter up
    ax.set_xlabel("MJD")
    ax.ticklabel_format(axis="x", useOffset=False, style="plain")  # whole MJDs, not "+5.842e4"
    ax.set_ylabel("magnitude")
    ax.grid(True, linewidth=0.4, alpha=0.5)
    score_ax = ax.twinx()
    live = [s for s in scores if not s.retracted]
    if live:
        score_ax.plot([s.mjd for s in live], [s.score for s in live], "-s", ms=4, color=_SCORE_COLOUR,
                      label="kilonova score")  # fmt: skip
    retracted = [s for s in scores if s.retracted]
    if retracted:
        score_ax.plot([s.mjd for s in retracted], [s.score for s in retracted], "x", ms=6, color="0.5",
                      label="score (retracted)")  # fmt: skip
    score_ax.set_ylim(0.0, 1.0)
    score_ax.set_ylabel("kilonova score", color=_SCORE_COLOUR)
    score_ax.tick_params(axis="y", colors=_SCORE_COLOUR)
    handles, labels = ax.get_legend_handles_labels()
    more_handles, more_labels = score_ax.get_legend_handles_labels()
    if handles or more_handles:
        # below the axes, where it hides no point
        fig.legend(handles + more_handles, labels + more_labels, fontsize=8, loc="outside lower center",
                   ncol=min(len(handles) + len(more_handles), 6), frameon=False)  # fmt: skip
    if not points and not scores:
        ax.text(0.5, 0.5, "no photometry or score yet", transform=ax.transAxes, ha="center", va="center")
    return fig


def lightcurve_svg(points: Sequence[LightCurvePoint], scores: Sequence[ScorePoint]) -> bytes:
    """The figure of :func:`lightcurve_figure` as SVG bytes."""
    fig = lightcurve_figure(points, scores)
    out = io.BytesIO()
    fig.savefig(out, format="svg", metadata={"Date": None})  # no date: the same data give the same bytes
    return out.getvalue()


def cached_lightcurve_svg(points: Sequence[LightCurvePoint], scores: Sequence[ScorePoint]) -> bytes:
    """:func:`lightcurve_svg`, kept in Django's cache by its data (tomtoolkit renders a tab's context twice)."""
    from django.core.cache import cache

    key = "tom_mma:lightcurve:" + hashlib.sha256(repr((list(points), list(scores))).encode()).hexdigest()
    svg = cache.get(key)
    if svg is None:
        svg = lightcurve_svg(points, scores)
        cache.set(key, svg, _CACHE_SECONDS)
    return svg


def svg_data_uri(svg: bytes) -> str:
    """A ``data:`` URI of SVG bytes, for an ``<img src>`` (a data URI in an img never runs scripts).

    Examples
    --------
    >>> svg_data_uri(b"<svg/>")
    'data:image/svg+xml;base64,PHN2Zy8+'
    """
    return "data:image/svg+xml;base64," + base64.b64encode(svg).decode("ascii")
