"""System checks of the optical settings: each id, and none for the defaults."""

from __future__ import annotations

import pytest

from tom_mma.checks_optical import check_optical_settings


def ids(settings, **values):
    settings.TOM_MMA = values
    return sorted(m.id for m in check_optical_settings())


def test_defaults_pass(settings):
    assert ids(settings) == []


@pytest.mark.parametrize(
    "values, expected",
    [
        ({"OPTICAL_CUTOUTS_KEPT": -1}, "tom_mma.E090"),
        ({"OPTICAL_CUTOUTS_KEPT": "all"}, "tom_mma.E090"),
        ({"OPTICAL_MATCH_RADIUS_ARCSEC": "2"}, "tom_mma.E091"),
        ({"OPTICAL_GW_WINDOW_DAYS": -3}, "tom_mma.E091"),
        ({"OPTICAL_TARGET_GROUPS": "Public"}, "tom_mma.E092"),
        ({"RUBIN_SCHEMA_VERSION": "lsst.v2_0"}, "tom_mma.W090"),
    ],
)
def test_each_bad_value_has_its_id(settings, values, expected):
    assert ids(settings, **values) == [expected]
