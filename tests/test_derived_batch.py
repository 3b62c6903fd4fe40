"""Derived alerts handled as a stream batch leave the database exactly as one by one would.

The results-topic handler has a ``batch`` (the stream's ingest hands it a run of messages at once): Targets
in one look-up, records and photometry in one insert each, the rules per alert in order. Here one sequence
with every case in it (merges by name, alias and cone, a repeat, a retraction before and after its alert,
a malformed message, photometry repeated across alerts) goes through the batch and then, on an emptied
database, one message at a time; the two end states must be the same.
"""

from __future__ import annotations

import pytest
from django.test import override_settings
from hop.models import Blob, JSONBlob
from tom_dataproducts.models import PhotometryReducedDatum
from tom_observations.models import ObservationRecord
from tom_targets.models import Target

from tests.test_derived_factories import AT2017GFO_POINTS, alert_dict, candidate, make_alert, retraction_dict
from tom_mma.handlers.derived import derived_alert_handler
from tom_mma.models import DerivedAlertRecord, ObservationTrigger

pytestmark = pytest.mark.django_db

SIMULATED = ["tom_mma.facilities.simulated.SimulatedFacility"]


def _sequence() -> list:
    first = make_alert(kilonova_score=0.3)
    later = make_alert(kilonova_score=0.95, latest_point_mjd=57984.0,
                       photometry=[*AT2017GFO_POINTS, {"mjd": 57984.0, "band": "r", "magnitude": 21.5,
                                                       "magnitude_error": None, "upper_limit": True,
                                                       "telescope": None}])  # fmt: skip
    by_alias = make_alert(candidate=candidate("AT2017gfo", 10.0, 10.0), kilonova_score=0.96)
    by_cone = make_alert(candidate=candidate("DLT17ck", first.candidate.ra, first.candidate.dec + 0.5 / 3600))
    other = make_alert(candidate=candidate("ZTF99other", 150.0, -20.0), kilonova_score=0.97,
                       photometry=[{**AT2017GFO_POINTS[0], "mjd": 60000.5}])  # fmt: skip
    retracted_first = make_alert(candidate=candidate("ZTF99retr", 200.0, 5.0))
    return [
        JSONBlob(content=first.to_dict()),
        JSONBlob(content=retraction_dict(retracted_first)),  # before its alert
        JSONBlob(content=later.to_dict()),
        JSONBlob(content={**alert_dict(), "kilonova_score": 7}),  # malformed
        JSONBlob(content=by_alias.to_dict()),
        JSONBlob(content=first.to_dict()),  # a repeat in the same batch
        Blob(content=b"not json"),
        JSONBlob(content=by_cone.to_dict()),
        JSONBlob(content=retraction_dict(by_cone)),  # after its alert
        JSONBlob(content=other.to_dict()),
        JSONBlob(content=retracted_first.to_dict()),
    ]


def _state() -> dict:
    names = dict(Target.objects.values_list("pk", "name"))
    return {
        "targets": sorted(
            (t.name, t.ra, t.dec, tuple(sorted(t.aliases.values_list("name", flat=True)))) for t in Target.objects.all()
        ),  # fmt: skip
        "records": sorted(
            (str(r.alert_id), r.kind, names.get(r.target_id), r.retracted, r.kilonova_score)
            for r in DerivedAlertRecord.objects.all()
        ),  # fmt: skip
        "photometry": sorted(
            (names[d.target_id], d.timestamp, d.bandpass, d.brightness, d.limit, d.source_location)
            for d in PhotometryReducedDatum.objects.all()
        ),  # fmt: skip
        "triggers": sorted(
            (names[t.target_id], t.rule, str(t.alert.alert_id)) for t in ObservationTrigger.objects.all()
        ),
        "observations": sorted(names[o.target_id] for o in ObservationRecord.objects.all()),
    }


def _summary(result) -> tuple:
    if isinstance(result, Exception):
        return ("error", type(result).__name__, str(result))
    return (str(result.record.alert_id), result.created, result.target.name if result.target else None,
            result.target_created, result.photometry_added, len(result.triggers))  # fmt: skip


def _one_by_one(messages) -> list:
    out = []
    for message in messages:
        try:
            out.append(derived_alert_handler(message, None))
        except ValueError as exc:
            out.append(exc)
    return out


def _empty() -> None:
    for model in (ObservationRecord, ObservationTrigger, DerivedAlertRecord, PhotometryReducedDatum, Target):
        model.objects.all().delete()


@override_settings(TOM_FACILITY_CLASSES=SIMULATED, TOM_MMA={"OBSERVATION_SCORE_ONLY_WITHOUT_SKYMAP": True})
def test_a_batch_ends_as_one_by_one_would(django_capture_on_commit_callbacks):
    messages = _sequence()
    with django_capture_on_commit_callbacks(execute=True):
        batched = derived_alert_handler.batch([(m, None) for m in messages])
    assert len(batched) == len(messages)
    batch_state = _state()
    _empty()
    with django_capture_on_commit_callbacks(execute=True):
        single = _one_by_one(messages)
    assert [_summary(r) for r in batched] == [_summary(r) for r in single]
    assert batch_state == _state()

    # what the sequence holds, so that the comparison above compares something
    kinds = [_summary(r)[0] == "error" for r in batched]
    assert kinds == [False, False, False, True, False, False, True, False, False, False, False]
    assert "kilonova_score must be in [0, 1]" in str(batched[3]) and "not JSON" in str(batched[6])
    assert batched[5].created is False and batched[5].record.alert_id == batched[0].record.alert_id
    assert [t[0] for t in batch_state["targets"]] == ["SSS17a", "ZTF99other", "ZTF99retr"]
    assert batch_state["targets"][0][3] == ("AT2017gfo", "DLT17ck")
    assert [r.photometry_added for r in (batched[0], batched[2], batched[9])] == [3, 1, 1]
    retracted = {r[0]: r[3] for r in batch_state["records"]}
    assert retracted[str(batched[7].record.alert_id)] and retracted[str(batched[10].record.alert_id)]
    assert batched[10].triggers == ()  # retracted before it arrived: no rules
    # the score rule once per Target: the first passing alert of SSS17a (0.95) and ZTF99other
    assert [t[0] for t in batch_state["triggers"]] == ["SSS17a", "ZTF99other"]
    assert batch_state["observations"] == ["SSS17a", "ZTF99other"]


def test_a_batch_again_adds_nothing(django_capture_on_commit_callbacks):
    messages = [JSONBlob(content=alert_dict()), JSONBlob(content=alert_dict(candidate=candidate("X1", 1.0, 2.0)))]
    with django_capture_on_commit_callbacks(execute=True):
        derived_alert_handler.batch([(m, None) for m in messages])
    before = _state()
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        again = derived_alert_handler.batch([(m, None) for m in messages])
    assert [r.created for r in again] == [False, False] and callbacks == []
    assert _state() == before and len(before["records"]) == 2
