"""The sky map zoom: sampled at the map's own resolution, shaded smoothly, labels clear of the 50% contour."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from hop.models import AvroBlob
from matplotlib.path import Path as MplPath

from tom_mma.gw.plotting import PlotCandidate, _zoom_box, interpolated, skymap_figure, zoom_grid
from tom_mma.gw.skymaps import read_multiorder

DATA = Path(__file__).parent / "data" / "lvk"


def _skymap():
    return read_multiorder(AvroBlob.load_file(DATA / "MS181101ab-preliminary.avro").content["event"]["skymap"])


def test_zoom_is_sampled_at_the_maps_own_resolution():
    skymap = _skymap()
    ra0, half, dec_lo, dec_hi = _zoom_box(skymap)
    nx, ny = zoom_grid(skymap, half, dec_lo, dec_hi)
    order = int(skymap.order[skymap.credible_level <= 0.9].max())
    pixel_deg = math.degrees(math.sqrt(4 * math.pi / (12 * 4**order)))
    # two samples per pixel of the finest order in the region, within the bounds of the grid
    cos_dec = math.cos(math.radians((dec_lo + dec_hi) / 2))
    expected = (math.ceil(4 * half * cos_dec / pixel_deg), math.ceil(2 * (dec_hi - dec_lo) / pixel_deg))
    assert (nx, ny) == tuple(min(max(n, 120), 600) for n in expected)
    fig = skymap_figure(skymap)
    mesh = fig.axes[1].collections[0]
    # matplotlib keeps the shading only privately: gouraud interpolates between the samples
    assert mesh._shading == "gouraud"
    assert mesh.get_array().shape == (ny, nx)


def test_zoom_interpolates_between_pixel_centres_instead_of_repeating_pixels():
    skymap = _skymap()
    ra0, half, _, _ = _zoom_box(skymap)
    # a line through the most probable position, sampled finer than the map's pixels
    offset = np.linspace(-half, half, 2000)
    ra, dec = (ra0 + offset) % 360.0, np.full(offset.shape, skymap.most_probable_position[1])
    nearest = skymap.rank(ra, dec).probdensity
    density, level = interpolated(skymap, ra, dec)
    assert np.mean(np.diff(nearest) == 0) > 0.5  # nearest neighbour: runs of one value (blocks)
    assert np.mean(np.diff(density) == 0) < 0.01  # interpolated: no runs
    assert np.max(np.abs(np.diff(density))) < 0.5 * np.max(np.abs(np.diff(nearest)))  # no steps
    # the interpolation keeps the map's values: within the range of the pixels around each position
    assert density.max() <= skymap.probdensity.max() * (1 + 1e-9) and np.all(density >= 0)
    assert np.all((level > -1e-9) & (level < 1 + 1e-9))  # weights sum to 1 (to rounding)


def test_candidate_labels_avoid_the_50_percent_contour():
    skymap = _skymap()
    ra0, half, dec_lo, dec_hi = _zoom_box(skymap)
    # candidates on and around the 50% contour, where a label put up-right would cross it
    rng = np.random.default_rng(7)
    dra = rng.uniform(-half, half, 4000)
    dec = rng.uniform(dec_lo, dec_hi, 4000)
    levels = skymap.rank((ra0 + dra) % 360.0, dec).credible_level
    near = np.flatnonzero(np.abs(levels - 0.5) < 0.03)[:6]
    assert len(near) == 6
    candidates = [PlotCandidate(f"AT-{i}", float((ra0 + dra[i]) % 360.0), float(dec[i]), float(levels[i]))
                  for i in near]  # fmt: skip
    fig = skymap_figure(skymap, candidates, title="MS181101ab")
    zoom = fig.axes[1]
    renderer = fig.canvas.get_renderer()
    labels = [t for t in zoom.texts if t.get_text().startswith("AT-")]
    assert sorted(t.get_text() for t in labels) == sorted(c.name for c in candidates)
    contour = [c for c in zoom.collections if hasattr(c, "levels")][0]
    pieces = [piece for p in contour.get_paths()[:1] for piece in p.transformed(zoom.transData).to_polygons(
        closed_only=False)]  # fmt: skip
    fig.canvas.draw()  # the layout is frozen: the positions checked are the ones saved
    for label in labels:
        box = label.get_window_extent(renderer)
        assert not any(MplPath(piece).intersects_bbox(box, filled=False) for piece in pieces), label.get_text()
