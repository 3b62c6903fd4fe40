"""Multi-order sky map math on the real MS181101ab BAYESTAR map (no database)."""

from __future__ import annotations

import doctest
import gzip
import io
import math
from pathlib import Path

import astropy.units as u
import astropy_healpix as ah
import fastavro
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from tom_mma.gw import healpix, notices, skymaps
from tom_mma.gw.skymaps import MultiOrderSkyMap, SkyMapError, conditional_distance_moments, read_multiorder

DATA = Path(__file__).parent / "data" / "lvk"


def _record(name: str) -> dict:
    with open(DATA / f"MS181101ab-{name}.avro", "rb") as f:
        return next(fastavro.reader(f))


@pytest.fixture(scope="module")
def fits_bytes() -> bytes:
    return _record("preliminary")["event"]["skymap"]


@pytest.fixture(scope="module")
def skymap(fits_bytes) -> MultiOrderSkyMap:
    return read_multiorder(fits_bytes)


@pytest.fixture(scope="module")
def positions() -> tuple[np.ndarray, np.ndarray]:
    """2,000 random positions: half uniform on the sky, half near the maximum (where the levels vary)."""
    rng = np.random.default_rng(20181101)
    n = 1000
    ra = rng.uniform(0, 360, n)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    ra_near = rng.normal(194.3, 1.5, n) % 360
    dec_near = np.clip(rng.normal(-17.9, 1.5, n), -90, 90)
    return np.concatenate([ra, ra_near]), np.concatenate([dec, dec_near])


def _multiorder_fits(columns: dict[str, np.ndarray], **header) -> bytes:
    table = Table(columns)
    hdu = fits.table_to_hdu(table)
    hdu.header.update({"PIXTYPE": "HEALPIX", "ORDERING": "NUNIQ", "COORDSYS": "C", **header})
    out = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(out)
    return out.getvalue()


def test_doctests_of_pure_modules():
    for module in (healpix, notices):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0, module.__name__
        assert result.attempted > 0, module.__name__


def test_user_guide_figures_exactly(skymap):
    """The LVK user guide's figures for MS181101ab-preliminary, to the last printed digit."""
    summary = skymap.summary()
    assert summary.ra == 194.30419921874997
    assert summary.dec == -17.856895095545468
    assert summary.distance_mean == 39.76999609489013
    assert summary.distance_std == 8.308435058808886
    assert summary.n_pixels == 19200
    assert summary.max_order == 11
    assert skymap.sha256 == "db875e1b8cc8" + skymap.sha256[12:]


def test_credible_areas_by_direct_sum(skymap):
    area = skymap.pixel_area * (180 / math.pi) ** 2
    prob = skymap.probdensity * skymap.pixel_area
    desc = np.argsort(-skymap.probdensity)
    cum = np.cumsum(prob[desc])
    for level, got in ((0.5, skymap.summary().area_50), (0.9, skymap.summary().area_90)):
        k = np.searchsorted(cum, level)  # pixels [0, k] reach the level
        below, upto = area[desc][:k].sum(), area[desc][: k + 1].sum()
        assert below <= got <= upto
    assert 5 < skymap.credible_area(0.5) < skymap.credible_area(0.9) < 100
    with pytest.raises(ValueError):
        skymap.credible_area(1.5)


def test_order_and_ipix_agree_with_astropy_healpix(skymap):
    order, ipix = skymaps.uniq_to_order_ipix(skymap.uniq)
    level, ipix_ah = ah.uniq_to_level_ipix(skymap.uniq)
    assert np.array_equal(order, level) and np.array_equal(ipix, ipix_ah)
    # exact near powers of two, where a float log2 rounds the wrong way
    big = np.array([4 * 4**29, 16 * 4**29 - 1, 4 * 4**28 - 1])
    order, ipix = skymaps.uniq_to_order_ipix(big)
    assert order.tolist() == [29, 29, 27] and ipix.tolist() == [0, 12 * 4**29 - 1, 12 * 4**27 - 1]
    with pytest.raises(SkyMapError):
        skymaps.uniq_to_order_ipix([3])


def test_rank_against_independent_computation(skymap, positions):
    """Each position's pixel found order by order with astropy_healpix; its level summed by brute force."""
    ra, dec = positions
    ranking = skymap.rank(ra, dec)
    order, _ = skymaps.uniq_to_order_ipix(skymap.uniq)
    row_of_uniq = {int(q): i for i, q in enumerate(skymap.uniq)}
    prob = skymap.probdensity * skymap.pixel_area
    found = np.full(ra.size, -1)
    for o in np.unique(order):
        ipix = ah.lonlat_to_healpix(ra * u.deg, dec * u.deg, ah.level_to_nside(int(o)), order="nested")
        for k, q in enumerate(4 * 4 ** int(o) + ipix):
            row = row_of_uniq.get(int(q))
            if row is not None:
                assert found[k] == -1, "two pixels of the map hold one position"
                found[k] = row
    assert (found >= 0).all()
    assert np.array_equal(ranking.probdensity, skymap.probdensity[found])
    # the smallest credible region containing the pixel: all pixels at least as dense (no ties in this map)
    assert np.unique(skymap.probdensity).size == skymap.n_pixels
    expected = np.array([prob[skymap.probdensity >= skymap.probdensity[row]].sum() for row in found])
    np.testing.assert_allclose(ranking.credible_level, expected, rtol=1e-12, atol=1e-13)
    assert ranking.credible_level.min() > 0 and ranking.credible_level.max() <= 1
    # positions near the maximum are mostly inside the 90% region, uniform ones mostly outside
    assert (ranking.credible_level[1000:] < 0.9).mean() > 0.5 > (ranking.credible_level[:1000] < 0.9).mean()
    # the most probable position is in the densest pixel: the smallest credible level of all
    best = skymap.rank(*skymap.most_probable_position)
    assert best.credible_level == skymap.credible_level.min()


def test_conditional_distance_against_quadrature(skymap, positions):
    ra, dec = positions
    ranking = skymap.rank(ra[:50], dec[:50])
    rows = skymap.locate(ra[:50], dec[:50])
    for k, row in enumerate(rows):
        mu, sigma, norm = skymap.distmu[row], skymap.distsigma[row], skymap.distnorm[row]
        if not np.isfinite(mu):
            assert np.isnan(ranking.distance_mean[k])
            continue
        r = np.linspace(0, max(mu, 0) + 15 * sigma, 40_001)
        pdf = norm * r**2 * np.exp(-0.5 * ((r - mu) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
        total = np.trapezoid(pdf, r)
        assert total == pytest.approx(1, rel=1e-4)  # DISTNORM normalises the ansatz
        mean = np.trapezoid(r * pdf, r) / total
        std = math.sqrt(np.trapezoid((r - mean) ** 2 * pdf, r) / total)
        assert ranking.distance_mean[k] == pytest.approx(mean, rel=1e-6)
        assert ranking.distance_std[k] == pytest.approx(std, rel=1e-6)


def test_distance_moments_edge_cases():
    mean, std = conditional_distance_moments([np.inf, 10.0, -50.0, 5.0], [1.0, 0.0, 5.0, np.nan])
    assert np.isnan(mean[[0, 1, 3]]).all() and np.isnan(std[[0, 1, 3]]).all()
    # far negative mu (x = -10): ~ r**2 exp(-2 r), no underflow; checked by quadrature
    r = np.linspace(0, 60, 600_001)
    pdf = r**2 * np.exp(-0.5 * ((r + 50.0) / 5.0) ** 2 + 50.0)  # rescaled: the exponent is huge
    m = np.trapezoid(r * pdf, r) / np.trapezoid(pdf, r)
    s = math.sqrt(np.trapezoid((r - m) ** 2 * pdf, r) / np.trapezoid(pdf, r))
    assert mean[2] == pytest.approx(m, rel=1e-6) and std[2] == pytest.approx(s, rel=1e-6)
    # x = -1e4: a gamma(3) distribution of rate |x| / sigma in the limit
    for x in (-1e4, -1e200):
        m, s = conditional_distance_moments(x, 1.0)
        assert m == pytest.approx(3 / -x, rel=1e-7) and s == pytest.approx(math.sqrt(3) / -x, rel=1e-7)
    # the two methods meet at the switch (x = -5)
    mean, std = conditional_distance_moments([-5.0 - 1e-9, -5.0 + 1e-9], [1.0, 1.0])
    np.testing.assert_allclose(mean[0], mean[1], rtol=1e-8)
    np.testing.assert_allclose(std[0], std[1], rtol=1e-8)


def test_marginal_distance_from_columns_when_header_lacks_it(skymap):
    bare = MultiOrderSkyMap(skymap.uniq, skymap.probdensity, skymap.distmu, skymap.distsigma, skymap.distnorm)
    mean, std = bare.marginal_distance
    assert mean == pytest.approx(39.76999609489013, rel=1e-3)
    assert std == pytest.approx(8.308435058808886, rel=1e-3)


def test_map_without_distance(skymap, positions):
    """A Burst-like map: no distance layers, no distance figures."""
    data = _multiorder_fits({"UNIQ": skymap.uniq, "PROBDENSITY": skymap.probdensity})
    burst = read_multiorder(data)
    assert not burst.has_distance
    summary = burst.summary()
    assert summary.distance_mean is None and summary.distance_std is None
    assert (summary.ra, summary.dec) == skymap.most_probable_position
    ranking = burst.rank(*positions)
    assert ranking.distance_mean is None
    np.testing.assert_array_equal(ranking.credible_level, skymap.rank(*positions).credible_level)


def test_gzip_compressed_map(fits_bytes, skymap):
    again = read_multiorder(gzip.compress(fits_bytes))
    assert again.summary() == skymap.summary()


@pytest.mark.parametrize(
    "mangle, reason",
    [
        (lambda b: b[: len(b) // 2], "truncated"),
        (lambda b: b[:-3000], "truncated"),
        (lambda b: b[:5000], "truncated FITS"),
        (lambda b: b[: 2880 * 200], "truncated sky map"),
        (lambda b: b"\x00" * 100, "not a FITS file"),
        (lambda b: b"\x1f\x8b" + b"garbage", "gzip"),
    ],
)
def test_corrupt_maps_are_refused_with_a_reason(fits_bytes, mangle, reason):
    with pytest.raises(SkyMapError, match=reason):
        read_multiorder(mangle(fits_bytes))


def test_inconsistent_maps_are_refused(skymap):
    uniq, prob = skymap.uniq, skymap.probdensity
    with pytest.raises(SkyMapError, match="tile the sky"):
        MultiOrderSkyMap(uniq[:-1], prob[:-1])
    doubled = uniq.copy()
    doubled[1] = doubled[0]
    with pytest.raises(SkyMapError, match="tile the sky"):
        MultiOrderSkyMap(doubled, prob)
    with pytest.raises(SkyMapError, match="integrates"):
        MultiOrderSkyMap(uniq, prob * 2)
    negative = prob.copy()
    negative[0] = -1
    with pytest.raises(SkyMapError, match="negative"):
        MultiOrderSkyMap(uniq, negative)
    with pytest.raises(SkyMapError, match="together"):
        MultiOrderSkyMap(uniq, prob, distmu=skymap.distmu)
    flat = _multiorder_fits({"UNIQ": uniq, "PROBDENSITY": prob}, ORDERING="NESTED")
    with pytest.raises(SkyMapError, match="not a multi-order"):
        read_multiorder(flat)
    with pytest.raises(ValueError, match="dec"):
        skymap.rank([10.0], [95.0])


def test_same_numbers_as_ligo_skymap(skymap, positions):
    """Optional cross-check against ligo.skymap (installed with the ``bench`` extra)."""
    crossmatch = pytest.importorskip("ligo.skymap.postprocess.crossmatch")
    distance = pytest.importorskip("ligo.skymap.distance")
    from astropy.coordinates import SkyCoord

    ra, dec = positions
    # without distance layers: crossmatch's 3-D part takes tens of seconds and is not what is compared
    table = Table({"UNIQ": skymap.uniq, "PROBDENSITY": skymap.probdensity})
    result = crossmatch.crossmatch(table, SkyCoord(ra * u.deg, dec * u.deg), contours=(0.5, 0.9))
    ours = skymap.rank(ra, dec)
    np.testing.assert_array_equal(ours.probdensity, result.probdensity)
    np.testing.assert_allclose(ours.credible_level, result.searched_prob, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose([skymap.credible_area(0.5), skymap.credible_area(0.9)], result.contour_areas, rtol=1e-9)
    mean, std, _ = distance.parameters_to_moments(skymap.distmu, skymap.distsigma)
    ours_mean, ours_std = skymap.conditional_distance
    finite = np.isfinite(skymap.distmu)
    np.testing.assert_allclose(ours_mean[finite], mean[finite], rtol=1e-9)
    np.testing.assert_allclose(ours_std[finite], std[finite], rtol=1e-9)


def test_the_ranking_benchmark_prints_its_json_with_or_without_ligo_skymap():
    """bench/skymap_rank.py ends with one JSON line, ligo.skymap (the ``bench`` extra) installed or not."""
    import importlib.util
    import json
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    run = subprocess.run(
        [sys.executable, str(root / "bench" / "skymap_rank.py"), "--n", "20000", "--repeat", "1"],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr
    figures = json.loads(run.stdout.splitlines()[-1])
    assert figures["positions"] == 20000 and figures["seconds"] > 0
    try:
        installed = importlib.util.find_spec("ligo.skymap") is not None
    except ModuleNotFoundError:  # no ``ligo`` namespace at all
        installed = False
    if installed:
        assert figures["ligo_skymap_seconds"] > 0 and figures["ratio_vs_ligo_skymap"] > 0
        assert figures["probdensity_identical"] and "ligo_skymap_missing" not in figures
    else:
        assert figures["ligo_skymap_seconds"] is None and figures["ratio_vs_ligo_skymap"] is None
        assert "ligo" in figures["ligo_skymap_missing"]
