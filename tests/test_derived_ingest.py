"""The results-topic handler and the ingest service: targets, photometry, score history, rules, replays."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.test import override_settings
from hop.io import Metadata
from hop.models import Blob, JSONBlob
from tom_dataproducts.models import PhotometryReducedDatum
from tom_observations.models import ObservationRecord
from tom_targets.models import Target

from tests.test_derived_factories import AT2017GFO_POINTS, alert_dict, candidate, make_alert, retraction_dict
from tom_mma.derived import ingest_derived_alert, mjd_to_datetime, score_history, score_history_context
from tom_mma.handlers.derived import derived_alert_handler
from tom_mma.models import DerivedAlertRecord, ObservationTrigger, SimulatedObservation
from tom_mma.rules import KilonovaScoreRule, ObservationRule, load_rules
from tom_mma.triggers import retry_trigger

pytestmark = pytest.mark.django_db

SIMULATED = ["tom_mma.facilities.simulated.SimulatedFacility"]
# these tests are about the rules' mechanics with alerts that name no GW event: the score alone decides
# (the region requirement is tested in tests/test_derived_region.py)
SCORE_ONLY = {"OBSERVATION_SCORE_ONLY_WITHOUT_SKYMAP": True}


class FixedLevelRule(KilonovaScoreRule):
    """The default rule with a known sky map: S-inside puts every candidate at level 0.5, S-outside at 0.97."""

    name = "kilonova-score-fixed-map"

    def credible_level(self, superevent_id, ra, dec):
        return {"S-inside": 0.5, "S-outside": 0.97}.get(superevent_id)


class NotARule:
    name = "not-a-rule"


def counts():
    return {
        "targets": Target.objects.count(),
        "records": DerivedAlertRecord.objects.count(),
        "photometry": PhotometryReducedDatum.objects.count(),
        "triggers": ObservationTrigger.objects.count(),
        "observations": ObservationRecord.objects.count(),
        "simulated": SimulatedObservation.objects.count(),
    }


@pytest.fixture(autouse=True)
def simulated_facility():
    with override_settings(TOM_FACILITY_CLASSES=SIMULATED, TOM_MMA=SCORE_ONLY):
        yield


def test_handler_turns_a_jsonblob_into_target_photometry_history_and_request(django_capture_on_commit_callbacks):
    alert = make_alert()
    metadata = Metadata(
        topic="tom-mma.derived", partition=0, offset=41, timestamp=0, key=None,
        headers=[("_id", uuid.UUID("1b4e28ba-2fa1-11d2-883f-0016d3cca427").bytes), ("_format", b"json")], _raw=None,
    )  # fmt: skip
    with django_capture_on_commit_callbacks(execute=True):
        result = derived_alert_handler(JSONBlob(content=alert.to_dict()), metadata)

    assert result.created and result.target_created
    target = Target.objects.get()
    assert (target.name, target.ra, target.dec) == ("SSS17a", alert.candidate.ra, alert.candidate.dec)
    assert list(target.aliases.values_list("name", flat=True)) == ["AT2017gfo"]

    record = DerivedAlertRecord.objects.get()
    assert str(record.alert_id) == alert.alert_id and record.target_id == target.pk
    assert record.kilonova_score == 0.91 and record.model_version == "kn-test-1.0.0"
    assert record.features == {"rise_time": 0.4, "colour_gr": None}
    assert record.delivery == {
        "topic": "tom-mma.derived", "partition": 0, "offset": 41, "timestamp": 0,
        "message_id": "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
    }  # fmt: skip
    assert record.raw == alert.to_dict()

    points = PhotometryReducedDatum.objects.filter(target=target).order_by("timestamp")
    assert [(p.bandpass, p.brightness, p.brightness_error, p.telescope) for p in points] == [
        (p["band"], p["magnitude"], p["magnitude_error"], p["telescope"]) for p in AT2017GFO_POINTS
    ]
    assert points[0].timestamp == mjd_to_datetime(AT2017GFO_POINTS[0]["mjd"])

    trigger = ObservationTrigger.objects.get()
    assert (trigger.target_id, trigger.rule, trigger.status) == (target.pk, "kilonova-score", "submitted")
    assert trigger.details["region"] == "no event" and trigger.details["score"] == 0.91
    observation = ObservationRecord.objects.get()
    assert (observation.target_id, observation.facility) == (target.pk, "Simulated")
    assert list(trigger.observation_records.all()) == [observation]
    assert SimulatedObservation.objects.get().observation_id == observation.observation_id
    assert observation.parameters["name"] == "tom-mma kilonova-score: SSS17a"


def test_replay_adds_nothing(django_capture_on_commit_callbacks):
    payload = alert_dict()
    with django_capture_on_commit_callbacks(execute=True):
        derived_alert_handler(JSONBlob(content=payload), None)
    before = counts()
    assert before["triggers"] == before["observations"] == 1
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        result = derived_alert_handler(JSONBlob(content=payload), None)
        result_bytes = derived_alert_handler(Blob(content=make_alert(**payload).to_json()), None)
    assert not result.created and not result_bytes.created
    assert result.record.pk == DerivedAlertRecord.objects.get().pk
    assert callbacks == []
    assert counts() == before


def test_one_request_per_candidate_and_rule(django_capture_on_commit_callbacks):
    """New alerts of the same candidate (by name, by alias, by position) request nothing more."""
    first = make_alert()
    later_same_name = make_alert(kilonova_score=0.97, latest_point_mjd=57984.0)
    by_alias = make_alert(candidate=candidate("AT2017gfo", 10.0, 10.0))
    by_cone = make_alert(candidate=candidate("DLT17ck", first.candidate.ra, first.candidate.dec + 0.5 / 3600))
    results = []
    for alert in (first, later_same_name, by_alias, by_cone, first):
        with django_capture_on_commit_callbacks(execute=True):
            results.append(derived_alert_handler(alert.to_dict(), None))
    assert [len(r.triggers) for r in results] == [1, 0, 0, 0, 0]
    assert {r.target.pk for r in results} == {Target.objects.get().pk}
    assert ObservationTrigger.objects.count() == ObservationRecord.objects.count() == 1
    assert DerivedAlertRecord.objects.count() == 4
    assert sorted(Target.objects.get().aliases.values_list("name", flat=True)) == ["AT2017gfo", "DLT17ck"]


def test_the_unique_constraint_holds_without_the_service():
    from django.db import IntegrityError, transaction

    target = Target.objects.create(name="X", type=Target.SIDEREAL, ra=1.0, dec=1.0)
    ObservationTrigger.objects.create(target=target, rule="r")
    with pytest.raises(IntegrityError), transaction.atomic():
        ObservationTrigger.objects.create(target=target, rule="r")
    ObservationTrigger.objects.create(target=target, rule="another rule")


def test_below_threshold_requests_nothing_until_a_score_passes(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        low = derived_alert_handler(alert_dict(kilonova_score=0.2), None)
    assert low.created and low.triggers == () and ObservationRecord.objects.count() == 0
    with django_capture_on_commit_callbacks(execute=True):
        high = derived_alert_handler(alert_dict(kilonova_score=0.5), None)  # the threshold itself passes
    assert len(high.triggers) == 1 and ObservationRecord.objects.count() == 1


@override_settings(TOM_MMA={"OBSERVATION_SCORE_THRESHOLD": 0.95})
def test_threshold_setting(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        result = derived_alert_handler(alert_dict(kilonova_score=0.94), None)
    assert result.triggers == ()


def test_unknown_sky_map_lets_the_score_decide_when_allowed_and_says_so(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        result = derived_alert_handler(alert_dict(gw_event="S990101zz"), None)
    trigger = ObservationTrigger.objects.get()
    assert result.triggers[0].pk == trigger.pk
    assert trigger.details["region"] == "unknown" and "score alone decides" in trigger.reason


@override_settings(TOM_MMA={"OBSERVATION_RULES": ["tests.test_derived_ingest.FixedLevelRule"]})
@pytest.mark.parametrize(("event", "fires", "region"), [("S-inside", True, "inside"), ("S-outside", False, None)])
def test_credible_region(event, fires, region, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        result = derived_alert_handler(alert_dict(gw_event=event), None)
    assert bool(result.triggers) == fires
    if fires:
        trigger = ObservationTrigger.objects.get()
        assert trigger.rule == "kilonova-score-fixed-map" and trigger.details["region"] == region
        assert trigger.details["credible_level"] == 0.5
        assert ObservationRecord.objects.count() == 1
    else:
        assert ObservationTrigger.objects.count() == ObservationRecord.objects.count() == 0


def test_photometry_is_deduplicated_across_alerts():
    extra = {"mjd": 57984.1, "band": "r", "magnitude": 21.5, "magnitude_error": None, "upper_limit": True,
             "telescope": None}  # fmt: skip
    first = ingest_derived_alert(make_alert(kilonova_score=0.1))
    second = ingest_derived_alert(make_alert(kilonova_score=0.1, photometry=[*AT2017GFO_POINTS, extra]))
    assert (first.photometry_added, second.photometry_added) == (3, 1)
    limit = PhotometryReducedDatum.objects.get(bandpass="r")
    assert (limit.brightness, limit.limit, limit.brightness_error, limit.telescope) == (None, 21.5, None, "")
    assert PhotometryReducedDatum.objects.count() == 4


def test_score_history_and_target_tab_context():
    ingest_derived_alert(make_alert(kilonova_score=0.1, latest_point_mjd=57984.0))
    ingest_derived_alert(make_alert(kilonova_score=0.2, latest_point_mjd=57983.0))
    target = Target.objects.get()
    assert [r.kilonova_score for r in score_history(target)] == [0.2, 0.1]
    context = score_history_context({"object": target})
    assert context["target"] == target and len(context["score_history"]) == 2


def test_retraction_after_the_alert(django_capture_on_commit_callbacks):
    original = make_alert(kilonova_score=0.1)
    ingest_derived_alert(original)
    result = derived_alert_handler(retraction_dict(original), None)
    assert result.created and result.target.pk == Target.objects.get().pk
    retracted = DerivedAlertRecord.objects.get(alert_id=original.alert_id)
    assert retracted.retracted and retracted.retraction_reason == "bogus: satellite streak"
    assert DerivedAlertRecord.objects.get(alert_id=result.record.alert_id).kind == "retraction"


def test_retraction_before_the_alert_requests_nothing(django_capture_on_commit_callbacks):
    original = make_alert()
    with django_capture_on_commit_callbacks(execute=True):
        derived_alert_handler(retraction_dict(original), None)
        result = derived_alert_handler(original.to_dict(), None)
    assert result.record.retracted and result.triggers == ()
    assert ObservationRecord.objects.count() == 0
    assert DerivedAlertRecord.objects.get(kind="retraction").target_id == result.target.pk


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (JSONBlob(content={**alert_dict(), "kilonova_score": 2}), "kilonova_score must be in [0, 1]"),
        (Blob(content=b"\x00\x01 not json"), "the message is not JSON"),
        (JSONBlob(content=[1, 2]), "cannot read a message of type list"),
        (b'{"schema": "tom-mma/derived-alert/v1"}', "missing field 'alert_id'"),
        (12, "cannot read a message of type int"),
    ],
)
def test_malformed_alert_raises_and_stores_nothing(message, reason):
    with pytest.raises(ValueError, match="derived alert: ") as excinfo:
        derived_alert_handler(message, None)
    assert reason in str(excinfo.value)
    assert set(counts().values()) == {0}


@override_settings(TOM_MMA={**SCORE_ONLY, "OBSERVATION_FACILITY": "NoSuchFacility"})
def test_failed_request_is_recorded_not_raised_and_can_be_retried(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        result = derived_alert_handler(alert_dict(), None)
    trigger = ObservationTrigger.objects.get()
    assert result.created and trigger.status == "failed" and "NoSuchFacility" in trigger.error
    assert ObservationRecord.objects.count() == 0
    with override_settings(TOM_MMA={**SCORE_ONLY, "OBSERVATION_FACILITY": "Simulated"}):
        retried = retry_trigger(trigger.pk)
        assert retry_trigger(trigger.pk).status == "submitted"  # a second retry does nothing
    assert retried.status == "submitted" and retried.error == ""
    assert ObservationRecord.objects.count() == 1


@override_settings(FACILITIES={"SIMULATED": {"DEC_LIMITS": [0.0, 90.0]}})
def test_facility_validation_rejection_is_recorded(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        derived_alert_handler(alert_dict(), None)  # AT2017gfo is at dec -23
    trigger = ObservationTrigger.objects.get()
    assert trigger.status == "failed" and "outside [0.0, 90.0]" in trigger.error
    assert SimulatedObservation.objects.count() == ObservationRecord.objects.count() == 0


@override_settings(
    TOM_MMA={**SCORE_ONLY, "OBSERVATION_PARAMETERS": {"band": "i", "exposure_time": 120.0, "exposure_count": 3}}
)
def test_observation_parameters_setting(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        derived_alert_handler(alert_dict(), None)
    params = ObservationRecord.objects.get().parameters
    assert (params["band"], params["exposure_time"], params["exposure_count"]) == ("i", 120.0, 3)


def test_rules_are_checked_at_load():
    assert [type(r) for r in load_rules()] == [KilonovaScoreRule]
    for rules, message in [
        (["tests.test_derived_ingest.NotARule"], "not a subclass of tom_mma.rules.ObservationRule"),
        (["tests.test_derived_ingest.Missing"], "cannot import"),
        (["tom_mma.rules.ObservationRule"], "has no name"),
        (["tom_mma.rules.KilonovaScoreRule", "tom_mma.rules.KilonovaScoreRule"], "two rules are named"),
    ]:
        with override_settings(TOM_MMA={"OBSERVATION_RULES": rules}), pytest.raises(ImproperlyConfigured) as exc:
            load_rules()
        assert message in str(exc.value)
    assert issubclass(FixedLevelRule, ObservationRule)


@pytest.mark.django_db(transaction=True)
def test_concurrent_alerts_of_one_new_candidate_make_one_target_and_one_request():
    alerts = [make_alert(kilonova_score=0.6 + i / 100) for i in range(3)]
    barrier = threading.Barrier(len(alerts))
    errors = []

    def worker(alert):
        try:
            barrier.wait(timeout=10)
            derived_alert_handler(alert.to_dict(), None)  # settings: the autouse fixture (process-wide)
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(a,)) for a in alerts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert Target.objects.count() == 1
    assert DerivedAlertRecord.objects.count() == 3
    assert ObservationTrigger.objects.get().status == "submitted"
    assert ObservationRecord.objects.count() == 1
    assert PhotometryReducedDatum.objects.count() == 3


@pytest.fixture
def ms181101ab():
    """The LVK mock superevent MS181101ab, ingested from its real preliminary notice (with its sky map)."""
    from tom_mma.gw.events import ingest_notice
    from tom_mma.gw.notices import parse_json

    with override_settings(TOM_MMA={"ACCEPT_MOCK_EVENTS": True}):
        ingest_notice(parse_json((Path(__file__).parent / "data" / "lvk" / "MS181101ab-preliminary.json").read_bytes()))
    from tom_mma.models import GWEvent

    return GWEvent.objects.get(superevent_id="MS181101ab")


def test_with_the_real_sky_map_inside_requests_and_links_to_the_event(ms181101ab, django_capture_on_commit_callbacks):
    # the map's most probable position (LVK user guide): inside the 90% region
    inside = candidate("ZTF18inside", 194.30419921874997, -17.856895095545468)
    with django_capture_on_commit_callbacks(execute=True):
        result = derived_alert_handler(alert_dict(gw_event="MS181101ab", candidate=inside), None)
    trigger = ObservationTrigger.objects.get()
    assert result.triggers[0].pk == trigger.pk and trigger.status == "submitted"
    assert trigger.details["region"] == "inside" and trigger.details["credible_level"] < 0.1
    observation = ObservationRecord.objects.get()
    assert list(ms181101ab.observations.values_list("observation_record", flat=True)) == [observation.pk]


def test_with_the_real_sky_map_outside_requests_nothing(ms181101ab, django_capture_on_commit_callbacks):
    outside = candidate("ZTF18outside", 14.3, 17.9)  # the opposite side of the sky
    with django_capture_on_commit_callbacks(execute=True):
        result = derived_alert_handler(alert_dict(gw_event="MS181101ab", candidate=outside), None)
    assert result.created and result.triggers == ()
    assert ObservationTrigger.objects.count() == ObservationRecord.objects.count() == 0
