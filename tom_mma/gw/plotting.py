"""Pictures of sky maps: an all-sky Mollweide view and a zoom on the 90% region, candidates marked.

Drawn with matplotlib's object API on an Agg canvas (no ``pyplot``, no global backend): it works on a
server with no display and does not disturb other code's matplotlib state.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .skymaps import MultiOrderSkyMap

__all__ = ["PLOT_VERSION", "PlotCandidate", "interpolated", "skymap_figure", "skymap_png", "zoom_grid"]

#: changes when the picture does, so that cached pictures of an older drawing are not served
PLOT_VERSION = 2
_CMAP = "cividis"
_LEVELS = (0.5, 0.9)
_LABELLED = 12  # candidates named in the zoom panel (the most probable ones)
_ZOOM_MIN, _ZOOM_MAX = 120, 600  # samples per axis of the zoom


@dataclass(frozen=True)
class PlotCandidate:
    """A position to mark: a name, RA and Dec in degrees, its credible level (for colour and labels)."""

    name: str
    ra: float
    dec: float
    credible_level: float = 1.0


def _mollweide_x(ra_deg: np.ndarray) -> np.ndarray:
    # RA increases to the left, 12h at the centre (the astronomers' convention)
    return np.radians(180.0 - np.asarray(ra_deg, dtype=float))


def _zoom_box(skymap: MultiOrderSkyMap) -> tuple[float, float, float, float]:
    """(ra_centre, half_width_ra, dec_lo, dec_hi) around the 90% region, RA measured from the most probable RA."""
    ra0, dec0 = skymap.most_probable_position
    inside = skymap.credible_level <= 0.9
    if not inside.any():
        inside = skymap.credible_level <= skymap.credible_level.min()
    import astropy_healpix as ah

    order, uniq = skymap.order[inside], skymap.uniq[inside]
    ipix = uniq - 4 * np.left_shift(np.int64(1), 2 * order)
    ra = np.empty(ipix.size)
    dec = np.empty(ipix.size)
    for o in np.unique(order):
        sel = order == o
        lon, lat = ah.healpix_to_lonlat(ipix[sel], ah.level_to_nside(int(o)), order="nested")
        ra[sel], dec[sel] = lon.deg, lat.deg
    dra = (ra - ra0 + 180.0) % 360.0 - 180.0
    pad = 2.0
    dec_lo, dec_hi = max(dec.min() - pad, -90.0), min(dec.max() + pad, 90.0)
    cos_dec = max(math.cos(math.radians((dec_lo + dec_hi) / 2)), 0.1)
    half_width = min(max(np.abs(dra).max() + pad / cos_dec, (dec_hi - dec_lo) / 2 / cos_dec), 180.0)
    return ra0, half_width, dec_lo, dec_hi


def interpolated(skymap: MultiOrderSkyMap, ra: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Probability density and credible level at each position, interpolated between pixel centres.

    Bilinear interpolation (astropy-healpix's weights of the four nearest pixel centres) at the order of the
    pixel that holds the position: a coarse pixel of a multi-order map blends into its neighbours instead of
    showing as a flat block, and a fine one keeps its detail.
    """
    import astropy.units as u
    import astropy_healpix as ah

    ra = np.asarray(ra, dtype=float)
    dec = np.asarray(dec, dtype=float)
    orders = skymap.order[skymap.locate(ra, dec)]
    density = np.empty(ra.shape)
    level = np.empty(ra.shape)
    for order in np.unique(orders):
        sel = orders == order
        nside = ah.level_to_nside(int(order))
        index, weights = ah.bilinear_interpolation_weights(ra[sel] * u.deg, dec[sel] * u.deg, nside, order="nested")
        lon, lat = ah.healpix_to_lonlat(index.ravel(), nside, order="nested")
        at = skymap.rank(lon.deg, lat.deg)
        density[sel] = (at.probdensity.reshape(index.shape) * weights).sum(axis=0)
        level[sel] = (at.credible_level.reshape(index.shape) * weights).sum(axis=0)
    return density, level


def zoom_grid(skymap: MultiOrderSkyMap, half_width: float, dec_lo: float, dec_hi: float) -> tuple[int, int]:
    """Samples (along RA, along Dec) of the zoom: two per pixel of the map's finest order in the 90% region.

    Between ``_ZOOM_MIN`` and ``_ZOOM_MAX`` samples per axis: a coarse map is interpolated smoothly between its
    pixel centres rather than drawn as blocks, a fine one is not sampled below its own resolution.
    """
    inside = skymap.credible_level <= 0.9
    order = int(skymap.order[inside].max()) if inside.any() else int(skymap.order.max())
    pixel_deg = math.degrees(math.sqrt(4 * math.pi / (12 * 4**order)))
    cos_dec = max(math.cos(math.radians((dec_lo + dec_hi) / 2)), 0.1)
    nx = math.ceil(2 * 2 * half_width * cos_dec / pixel_deg)
    ny = math.ceil(2 * (dec_hi - dec_lo) / pixel_deg)
    return min(max(nx, _ZOOM_MIN), _ZOOM_MAX), min(max(ny, _ZOOM_MIN), _ZOOM_MAX)


# label offsets tried in turn (points from the marker): up-right first, then around the marker, then farther
_LABEL_OFFSETS = [(dx * r, dy * r) for r in (5, 12, 20) for dx, dy in
                  ((1, 1), (1, -1), (-1, 1), (-1, -1), (1, 0), (-1, 0), (0, 1.2), (0, -1.2))]  # fmt: skip


def _place_labels(fig: Figure, ax, contours, labels: Sequence[tuple[str, float, float]]) -> list:
    """Name the candidates where the label's box crosses neither the 50% contour nor an earlier label.

    The first offset of ``_LABEL_OFFSETS`` that is clear wins; if none is, the one crossing the least.
    """
    renderer = fig.canvas.get_renderer()
    paths = [p.transformed(ax.transData) for p in contours.get_paths()[:1]]  # the 50% level
    # the contour split into its closed pieces, so that a box inside the region is not taken as crossing it
    pieces = [piece for p in paths for piece in p.to_polygons(closed_only=False)]
    placed: list = []
    annotations = []
    for name, x, y in labels:
        best, best_cost = None, None
        for dx, dy in _LABEL_OFFSETS:
            text = ax.annotate(name, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=8,
                               color="white", zorder=6, ha="left" if dx >= 0 else "right",
                               va="bottom" if dy >= 0 else "top")  # fmt: skip
            box = text.get_window_extent(renderer).padded(1)
            cost = sum(_crosses(piece, box) for piece in pieces) + sum(box.overlaps(b) for b in placed)
            if best_cost is None or cost < best_cost:
                if best is not None:
                    best[0].remove()
                best, best_cost = (text, box), cost
            else:
                text.remove()
            if cost == 0:
                break
        placed.append(best[1])
        annotations.append(best[0])
    return annotations


def _crosses(polygon: np.ndarray, box) -> bool:
    """Whether a polyline (display coordinates) passes through a box."""
    from matplotlib.path import Path

    return bool(Path(polygon).intersects_bbox(box, filled=False))


def skymap_figure(
    skymap: MultiOrderSkyMap,
    candidates: Sequence[PlotCandidate] = (),
    title: str = "",
    resolution: int = 720,
) -> Figure:
    """A two-panel figure: the whole sky (Mollweide) and a zoom on the 90% credible region.

    Both show the probability density, the 50% and 90% credible contours, and the candidates.

    Parameters
    ----------
    skymap : MultiOrderSkyMap
    candidates : sequence of PlotCandidate
        Positions to mark; the most probable ones are named in the zoom.
    title : str
    resolution : int
        Pixels of the all-sky grid along RA (the grid is sampled, never flattened to the map's finest order).
    """
    fig = Figure(figsize=(13, 5.2), layout="constrained")
    FigureCanvasAgg(fig)
    sky = fig.add_subplot(1, 2, 1, projection="mollweide")
    zoom = fig.add_subplot(1, 2, 2)

    # all sky: sample the map on an RA/Dec grid of pixel centres
    nx, ny = resolution, resolution // 2
    ra = (np.arange(nx) + 0.5) * 360.0 / nx
    dec = (np.arange(ny) + 0.5) * 180.0 / ny - 90.0
    ra_grid, dec_grid = np.meshgrid(ra, dec)
    ranked = skymap.rank(ra_grid.ravel(), dec_grid.ravel())
    density = ranked.probdensity.reshape(ny, nx)
    level = ranked.credible_level.reshape(ny, nx)
    x, y = _mollweide_x(ra_grid), np.radians(dec_grid)
    sky.pcolormesh(x, y, density, cmap=_CMAP, shading="auto", rasterized=True)
    sky.contour(
        x, y, level, levels=_LEVELS, colors=["white", "white"], linewidths=[1.2, 0.8], linestyles=["solid", "dashed"]
    )
    ticks = np.arange(-150, 151, 30)
    sky.set_xticks(np.radians(ticks))
    sky.set_xticklabels([f"{int((180 - t) / 15)}h" for t in ticks], color="0.85", fontsize=8)
    sky.tick_params(axis="y", labelsize=8)
    sky.grid(True, color="0.6", linewidth=0.4, alpha=0.6)
    sky.set_title("whole sky (RA increases to the left)", fontsize=10)

    # zoom on the 90% region, RA as an offset from the most probable RA so that it never wraps; sampled at the
    # map's own resolution there, interpolated between pixel centres and shaded smoothly between samples (no
    # blocks of nearest-neighbour pixels)
    ra0, half, dec_lo, dec_hi = _zoom_box(skymap)
    nx, ny = zoom_grid(skymap, half, dec_lo, dec_hi)
    zx = np.linspace(-half, half, nx)
    zy = np.linspace(dec_lo, dec_hi, ny)
    zx_grid, zy_grid = np.meshgrid(zx, zy)
    z_density, z_level = interpolated(skymap, ((ra0 + zx_grid) % 360.0).ravel(), zy_grid.ravel())
    zoom.pcolormesh(zx, zy, z_density.reshape(zy_grid.shape), cmap=_CMAP, shading="gouraud", rasterized=True)
    contours = zoom.contour(
        zx,
        zy,
        z_level.reshape(zy_grid.shape),
        levels=_LEVELS,
        colors=["white", "white"],
        linewidths=[1.5, 1.0],
        linestyles=["solid", "dashed"],
    )
    zoom.clabel(contours, fmt={0.5: "50%", 0.9: "90%"}, fontsize=8)
    zoom.set_xlim(half, -half)  # east to the left
    zoom.set_ylim(dec_lo, dec_hi)
    zoom.set_xlabel(f"RA offset from {ra0:.2f}° (deg)")
    zoom.set_ylabel("Dec (deg)")
    zoom.set_title("90% credible region", fontsize=10)

    if candidates:
        c_ra = np.array([c.ra for c in candidates])
        c_dec = np.array([c.dec for c in candidates])
        inside = np.array([c.credible_level <= 0.9 for c in candidates])
        style = {"s": 28, "edgecolors": "black", "linewidths": 0.7, "zorder": 5}
        for mask, colour in ((inside, "#ff5a36"), (~inside, "#bbbbbb")):
            if mask.any():
                sky.scatter(_mollweide_x(c_ra[mask]), np.radians(c_dec[mask]), c=colour, marker="o", **style)
        offset = (c_ra - ra0 + 180.0) % 360.0 - 180.0
        visible = (np.abs(offset) <= half) & (c_dec >= dec_lo) & (c_dec <= dec_hi)
        for mask, colour in ((inside & visible, "#ff5a36"), (~inside & visible, "#bbbbbb")):
            if mask.any():
                zoom.scatter(offset[mask], c_dec[mask], c=colour, marker="o", **style)
        order = sorted(np.flatnonzero(visible), key=lambda i: candidates[i].credible_level)[:_LABELLED]
        labels = [(candidates[i].name, offset[i], c_dec[i]) for i in order]
    else:
        labels = []
    mappable = zoom.collections[0]
    fig.colorbar(mappable, ax=zoom, label="probability per sr", shrink=0.85)
    summary = skymap.summary()
    dist = (
        f", {summary.distance_mean:.0f} ± {summary.distance_std:.0f} Mpc" if summary.distance_mean is not None else ""
    )
    fig.suptitle(
        f"{title}  50%: {summary.area_50:.0f} deg², 90%: {summary.area_90:.0f} deg²{dist}".strip(), fontsize=12
    )
    if labels:
        # labels go where they avoid the 50% contour as finally laid out: lay out now, then freeze the layout
        fig.canvas.draw()
        fig.set_layout_engine("none")
        _place_labels(fig, zoom, contours, labels)
    return fig


def skymap_png(
    skymap: MultiOrderSkyMap, candidates: Sequence[PlotCandidate] = (), title: str = "", dpi: int = 90
) -> bytes:
    """The figure of :func:`skymap_figure` as PNG bytes."""
    fig = skymap_figure(skymap, candidates, title)
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=dpi)
    return out.getvalue()
