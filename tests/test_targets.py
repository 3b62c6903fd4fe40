"""tom_mma.targets: the one place that creates Targets from alerts (merge by name, alias, cone; permissions)."""

from __future__ import annotations

import doctest
import math
import random
import threading

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test import override_settings
from guardian.shortcuts import get_perms
from tom_targets.models import Target, TargetName

import tom_mma.targets
from tom_mma.targets import angular_separation_deg, cone_filter, get_or_create_target

pytestmark = pytest.mark.django_db

ARCSEC = 1.0 / 3600.0


def test_doctests():
    assert doctest.testmod(tom_mma.targets).failed == 0


def test_new_target_with_aliases_and_group_permissions():
    target, created = get_or_create_target("ZTF17aabcdef", 197.45, -23.38, aliases=["AT2017gfo", "SSS17a"])
    assert created
    assert (target.name, target.ra, target.dec, target.type) == ("ZTF17aabcdef", 197.45, -23.38, Target.SIDEREAL)
    assert sorted(target.aliases.values_list("name", flat=True)) == ["AT2017gfo", "SSS17a"]
    public = Group.objects.get(name="Public")
    assert set(get_perms(public, target)) >= {"view_target", "change_target"}
    assert "delete_target" not in get_perms(public, target)


@override_settings(TOM_MMA={"TARGET_GROUPS": ["kilonova-team", "observers"]})
def test_target_groups_setting():
    target, _ = get_or_create_target("ZTF17groups", 10.0, 10.0)
    for name in ("kilonova-team", "observers"):
        assert "view_target" in get_perms(Group.objects.get(name=name), target)
    assert not Group.objects.filter(name="Public").exists()


def test_merge_by_exact_name_even_far_away():
    first, _ = get_or_create_target("ZTF17name", 10.0, 10.0)
    again, created = get_or_create_target("ZTF17name", 200.0, -50.0, aliases=["AT2017name"])
    assert not created and again.pk == first.pk
    assert list(again.aliases.values_list("name", flat=True)) == ["AT2017name"]
    assert Target.objects.count() == 1


def test_merge_by_alias_of_the_existing_target():
    existing, _ = get_or_create_target("AT2017gfo", 197.45, -23.38, aliases=["SSS17a"])
    # a different primary name, far away, but one of its aliases is an alias of the existing target
    merged, created = get_or_create_target("DLT17ck", 50.0, 50.0, aliases=["SSS17a"])
    assert not created and merged.pk == existing.pk
    assert sorted(merged.aliases.values_list("name", flat=True)) == ["DLT17ck", "SSS17a"]
    # the candidate's own name being an alias merges too
    again, created = get_or_create_target("DLT17ck", 0.0, 0.0)
    assert not created and again.pk == existing.pk
    assert Target.objects.count() == 1


def test_merge_by_cone_adds_the_new_name_as_alias():
    existing, _ = get_or_create_target("ZTF17cone", 150.0, 2.0)
    near, created = get_or_create_target("ATLAS17cone", 150.0 + 1.5 * ARCSEC, 2.0)
    assert not created and near.pk == existing.pk
    assert list(existing.aliases.values_list("name", flat=True)) == ["ATLAS17cone"]
    far, created = get_or_create_target("PS17cone", 150.0, 2.0 + 2.5 * ARCSEC)
    assert created and far.pk != existing.pk


def test_cone_merges_with_the_nearest():
    a, _ = get_or_create_target("A", 80.0, 0.0)
    b, _ = get_or_create_target("B", 80.0, 3.0 * ARCSEC)
    merged, created = get_or_create_target("C", 80.0, 1.8 * ARCSEC)  # 1.8" from A, 1.2" from B
    assert not created and merged.pk == b.pk
    assert a.aliases.count() == 0


@override_settings(TOM_MMA={"MERGE_RADIUS_ARCSEC": 10.0})
def test_merge_radius_setting():
    existing, _ = get_or_create_target("ZTF17wide", 30.0, 30.0)
    merged, created = get_or_create_target("ATLAS17wide", 30.0, 30.0 + 8 * ARCSEC)
    assert not created and merged.pk == existing.pk


@override_settings(TOM_MMA={"MERGE_RADIUS_ARCSEC": 0})
def test_zero_radius_disables_the_cone():
    get_or_create_target("ZTF17zero", 30.0, 30.0)
    _, created = get_or_create_target("ATLAS17zero", 30.0, 30.0)
    assert created


@pytest.mark.parametrize(
    ("existing", "incoming", "merges"),
    [
        ((359.9998, 10.0), (0.0001, 10.0), True),  # 1.06" across RA = 0/360
        ((0.0001, -45.0), (359.9997, -45.0), True),  # 1.02" the other way
        ((359.999, 10.0), (0.001, 10.0), False),  # 7.1" across the wrap
        ((0.0, 89.9997), (180.0, 89.9998), True),  # 1.8" across the north pole
        ((90.0, 89.9997), (0.0, 89.9990), False),  # 3.76" near the pole, RA 90 deg apart
        ((10.0, -89.9998), (250.0, -89.9998), True),  # 1.25" near the south pole, RA 120 deg apart
        ((0.0, 90.0), (123.0, 89.99955), True),  # 1.62" from the pole itself
    ],
)
def test_cone_merge_at_the_wrap_and_the_poles(existing, incoming, merges):
    expected = angular_separation_deg(*existing, *incoming) <= 2.0 * ARCSEC
    assert expected == merges  # the case is what its comment says
    first, _ = get_or_create_target("EXISTING", *existing)
    second, created = get_or_create_target("INCOMING", *incoming)
    assert (second.pk == first.pk) == merges and created != merges


def _offset(ra, dec, separation, position_angle):
    """The point ``separation`` degrees from (ra, dec) towards ``position_angle`` (degrees east of north)."""
    ra, dec, sep, pa = map(math.radians, (ra, dec, separation, position_angle))
    dec2 = math.asin(math.sin(dec) * math.cos(sep) + math.cos(dec) * math.sin(sep) * math.cos(pa))
    ra2 = ra + math.atan2(math.sin(pa) * math.sin(sep) * math.cos(dec), math.cos(sep) - math.sin(dec) * math.sin(dec2))
    return math.degrees(ra2) % 360.0, math.degrees(dec2)


def test_cone_filter_agrees_with_brute_force():
    rng = random.Random(20170817)
    centres = [(0.0, 0.0), (359.9, 20.0), (0.05, -30.0), (180.0, 89.5), (10.0, -89.8), (200.0, 60.0), (90.0, 88.9)]
    rows = []
    for ra0, dec0 in centres:
        for _ in range(80):
            ra, dec = _offset(ra0, dec0, rng.uniform(0.0, 2.5), rng.uniform(0.0, 360.0))
            rows.append(Target(name=f"T{len(rows)}", type=Target.SIDEREAL, ra=ra, dec=dec))
    Target.objects.bulk_create(rows)
    for ra0, dec0 in centres:
        for radius in (0.4, 1.1, 2.0):
            found = {t.name for t, _ in cone_filter(Target.objects.all(), ra0, dec0, radius)}
            brute = {t.name for t in rows if angular_separation_deg(ra0, dec0, t.ra, t.dec) <= radius}
            assert found == brute, (ra0, dec0, radius)
            assert brute, "the sample must put targets in every cone"


def test_alias_owned_by_another_target_is_not_moved():
    other, _ = get_or_create_target("OTHER", 100.0, 0.0, aliases=["SHARED"])
    mine, created = get_or_create_target("MINE", 200.0, 0.0)
    assert created
    # MINE again, claiming SHARED: merged by name, SHARED stays with OTHER
    again, created = get_or_create_target("MINE", 200.0, 0.0, aliases=["SHARED"])
    assert not created and again.pk == mine.pk
    assert TargetName.objects.get(name="SHARED").target_id == other.pk


def test_a_name_is_required():
    with pytest.raises(ValueError, match="needs a name"):
        get_or_create_target("  ", 1.0, 1.0)


@pytest.mark.django_db(transaction=True)
def test_concurrent_creation_makes_one_target():
    """Four workers see the same new candidate (different names, same place) at once: one Target."""
    barrier = threading.Barrier(4)
    results, errors = [], []

    def worker(i):
        try:
            barrier.wait(timeout=10)
            target, created = get_or_create_target(f"SURVEY{i}-17x", 123.456, -12.345 + i * 0.2 * ARCSEC)
            results.append((target.pk, created))
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert len({pk for pk, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert Target.objects.count() == 1
    assert Target.objects.get().aliases.count() == 3


@pytest.mark.django_db
def test_the_targets_declination_is_indexed_for_cone_searches():
    """tom-mma's migration 0007 indexes tomtoolkit's Target declination (the cone search's band)."""
    from django.db import connection

    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, "tom_targets_basetarget")
    assert constraints["tom_mma_target_dec"]["columns"] == ["dec"] and constraints["tom_mma_target_dec"]["index"]
