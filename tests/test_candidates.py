"""The broker's candidates: many points at once (an optical alert's history) as one point at a time would store them."""

from __future__ import annotations

import pytest

from tom_mma_broker import signals
from tom_mma_broker.candidates import ingest_point, ingest_points
from tom_mma_broker.models import Candidate, CandidatePoint
from tom_mma_broker.schemas.photometry import PhotometryMessage

pytestmark = pytest.mark.django_db


def _points(name: str, ra: float, dec: float, n: int, aliases: tuple[str, ...] = (), band: str = "r") -> list:
    return [
        PhotometryMessage.create(object_name=name, ra=ra, dec=dec, mjd=60000.0 + i, band=band,
                                 magnitude=18.0 + 0.1 * i, magnitude_error=0.05, source="test",
                                 aliases=list(aliases))
        for i in range(n)
    ]  # fmt: skip


@pytest.fixture
def added():
    seen: list[int] = []

    def on_added(sender, candidate_pk, **kwargs):
        seen.append(candidate_pk)

    signals.candidate_points_added.connect(on_added, dispatch_uid="test_candidates")
    yield seen
    signals.candidate_points_added.disconnect(dispatch_uid="test_candidates")


def test_a_history_is_stored_once_under_one_candidate_with_one_signal(added):
    points = _points("ZTF26aaaaaaa", 10.0, 20.0, 30)
    touched = ingest_points(points + points[:5])  # a point twice in one call
    assert [c.name for c in touched] == ["ZTF26aaaaaaa"]
    assert CandidatePoint.objects.filter(candidate__name="ZTF26aaaaaaa").count() == 30
    assert added == [touched[0].pk]
    # the same history again (a replay, or a later alert repeating it) adds nothing and signals nothing
    assert ingest_points(points) == []
    assert CandidatePoint.objects.count() == 30 and added == [touched[0].pk]


def test_the_batch_merges_as_single_points_do_by_name_alias_and_cone():
    ingest_point(_points("ZTF26bbbbbbb", 50.0, -10.0, 1)[0])
    ingest_point(_points("AT2026abc", 120.0, 5.0, 1, aliases=("ZTF26ccccccc",))[0])
    # by name; by an alias of the candidate (its name elsewhere); by the 2-arcsec cone (a Rubin id, 1" away)
    ingest_points(_points("ZTF26bbbbbbb", 50.0, -10.0, 3, band="g"))
    ingest_points(_points("ZTF26ccccccc", 120.0, 5.0, 3, band="g"))
    ingest_points(_points("170032882491", 50.0 + 1 / 3600, -10.0, 3, band="i"))
    assert Candidate.objects.count() == 2
    by_name = {c.name: c for c in Candidate.objects.all()}
    assert by_name["ZTF26bbbbbbb"].points.count() == 1 + 3 + 3
    assert "170032882491" in by_name["ZTF26bbbbbbb"].aliases
    assert by_name["AT2026abc"].points.count() == 1 + 3


def test_two_objects_in_one_call_are_two_candidates(added):
    touched = ingest_points(_points("ZTF26ddddddd", 200.0, 30.0, 4) + _points("ZTF26eeeeeee", 201.0, 30.0, 2))
    assert sorted(c.name for c in touched) == ["ZTF26ddddddd", "ZTF26eeeeeee"]
    assert sorted(added) == sorted(c.pk for c in touched)
    assert {c.name: c.points.count() for c in Candidate.objects.all()} == {"ZTF26ddddddd": 4, "ZTF26eeeeeee": 2}
