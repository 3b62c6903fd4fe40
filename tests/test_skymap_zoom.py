"""The sky map zoom: sampled at the map's own resolution, shaded smoothly, labels clear of the 50% contour."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from hop.models import AvroBlob
from matplotlib.path import Path as MplPath

from tom_mma.gw.plotting import PlotCandidate, _zoom_box, skymap_figure, zoom_grid
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
    # two samples per pixel of the finest order in the region (within the bounds on the grid)
    assert abs((dec_hi - dec_lo) / (ny - 1) - pixel_deg / 2) < pixel_deg / 2 or ny in (120, 900)
    assert 120 <= nx <= 900 and 120 <= ny <= 900
    fig = skymap_figure(skymap)
    zoom = fig.axes[1]
    mesh = zoom.collections[0]
    # matplotlib keeps the shading only privately: gouraud interpolates between the samples (no blocks)
    assert mesh._shading == "gouraud"
    assert mesh.get_array().shape == (ny, nx)


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
