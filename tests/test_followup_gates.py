"""The gates of the kilonova observation rule (``tom_mma.followup_gates``): the LVK notice's own fields and the
classifier's declared operating point; and the broker's GW context for the classifier
(``tom_mma_broker.classifier_context``), on a real LVK notice of MS181101ab."""

from __future__ import annotations

import doctest
import math
from pathlib import Path

import pytest
from django.test import override_settings

from tests.test_derived_factories import alert_dict, candidate
from tom_mma import followup_gates
from tom_mma.followup_gates import classifier_verdict, lvk_gate

LVK = Path(__file__).parent / "data" / "lvk"
# MS181101ab as its preliminary notice says (LVK user guide sample)
MS181101AB = {
    "significant": True,
    "far": 9.11069936486e-14,
    "group": "CBC",
    "properties": {"HasNS": 0.95, "HasRemnant": 0.91, "HasMassGap": 0.01},
    "classification": {"BNS": 0.95, "NSBH": 0.01, "BBH": 0.03, "Terrestrial": 0.01},
}
INSIDE = candidate("ZTF18inside", 194.30419921874997, -17.856895095545468)


def test_doctests():
    result = doctest.testmod(followup_gates)
    assert result.attempted > 0 and result.failed == 0


def test_a_bns_passes_and_the_reason_says_what_was_checked():
    verdict = lvk_gate(MS181101AB)
    assert verdict.passes
    assert verdict.details == {"group": "CBC", "significant": True, "far_hz": 9.11069936486e-14, "has_ns": 0.95,
                               "has_remnant": 0.91, "p_terrestrial": 0.01}  # fmt: skip


@pytest.mark.parametrize(
    "change, limits, words",
    [
        ({"properties": {"HasNS": 0.0, "HasRemnant": 0.0}, "classification": {"BBH": 0.99}}, {}, "HasNS 0.00 < 0.50"),
        ({"properties": {}}, {}, "HasNS unknown"),
        ({"significant": False}, {}, "not a significant alert"),
        ({"significant": None}, {}, "not a significant alert"),
        ({"far": 1e-5}, {}, "FAR 1e-05 Hz above the limit 3.9e-07 Hz"),
        ({"far": None}, {}, "FAR unknown"),
        ({"group": "Burst", "properties": {}, "classification": {}}, {}, "group Burst not followed"),
        ({"classification": {"Terrestrial": 0.8}}, {}, "p_terrestrial 0.80 > 0.50"),
        ({"properties": {"HasNS": 0.95, "HasRemnant": 0.05}}, {"OBSERVATION_MIN_HAS_REMNANT": 0.1}, "HasRemnant 0.05"),
        ({"far": 1e-9}, {"OBSERVATION_MAX_FAR_HZ": 1e-10}, "above the limit 1e-10 Hz"),
    ],
)
def test_what_the_gate_refuses(change, limits, words):
    verdict = lvk_gate({**MS181101AB, **change}, limits)
    assert not verdict.passes and words in verdict.reason


def test_each_check_can_be_turned_off():
    bbh_burst = {"significant": False, "far": 1e-3, "group": "Burst", "properties": {}, "classification": {}}
    limits = {"OBSERVATION_REQUIRE_SIGNIFICANT": False, "OBSERVATION_MAX_FAR_HZ": None,
              "OBSERVATION_GW_GROUPS": ["CBC", "Burst"]}  # fmt: skip
    assert lvk_gate(bbh_burst, limits).passes  # Burst events have no HasNS: not checked
    no_ns = {**MS181101AB, "properties": {}, "classification": {}}
    assert lvk_gate(no_ns, {"OBSERVATION_MIN_HAS_NS": 0.0, "OBSERVATION_MAX_P_TERRESTRIAL": 1.0}).passes


def test_the_gate_defaults_are_the_settings_defaults():
    from tom_mma.conf import DEFAULTS

    assert followup_gates.LVK_GATE_SETTINGS == {k: DEFAULTS[k] for k in followup_gates.LVK_GATE_SETTINGS}
    assert DEFAULTS["OBSERVATION_MAX_FAR_HZ"] == pytest.approx(1 / (30 * 86400))


def test_the_classifier_operating_point_decides_when_the_alert_declares_it():
    # declared not a candidate: a high score does not overrule it
    features = {"op_is_candidate": 0.0, "op_threshold": 0.97, "op_gw_context": 0.0, "n_detections": 3.0}
    verdict = classifier_verdict(0.96, features, 0.5)
    assert not verdict.passes and "below the classifier's operating point" in verdict.reason
    assert verdict.details["operating_point"] == "classifier" and verdict.details["threshold"] == 0.97
    assert classifier_verdict(0.98, {**features, "op_is_candidate": 1.0}, 0.99).passes  # not the rule's 0.99


def test_without_a_declared_operating_point_a_single_detection_never_passes():
    assert not classifier_verdict(1.0, {"n_detections": 1.0}, 0.5).passes
    assert classifier_verdict(0.6, {"n_detections": 2.0}, 0.5).passes
    assert classifier_verdict(0.6, {}, 0.5).passes  # another publisher's alert that says nothing of its evidence
    assert not classifier_verdict(0.4, {}, 0.5).passes


# -- wired into the rule, on a real notice ------------------------------------------------------------------
def _deliver(name: str, capture) -> None:
    from tom_mma.gw.events import ingest_notice
    from tom_mma.gw.notices import parse_json

    with capture(execute=True):
        ingest_notice(parse_json((LVK / f"MS181101ab-{name}.json").read_bytes()))


@pytest.fixture
def tom(settings):
    settings.TOM_FACILITY_CLASSES = ["tom_mma.facilities.simulated.SimulatedFacility"]
    settings.TOM_MMA = {"ACCEPT_MOCK_EVENTS": True}


@pytest.mark.django_db
def test_the_rule_says_the_gate_verdict(tom, django_capture_on_commit_callbacks):
    from tom_mma.handlers.derived import derived_alert_handler
    from tom_mma.models import ObservationTrigger

    _deliver("preliminary", django_capture_on_commit_callbacks)
    features = {"op_is_candidate": 1.0, "op_threshold": 0.95, "op_gw_context": 1.0, "n_detections": 4.0,
                "span_days": 1.2}  # fmt: skip
    alert = alert_dict(kilonova_score=0.97, gw_event="MS181101ab", candidate=INSIDE, features=features)
    with django_capture_on_commit_callbacks(execute=True):
        derived_alert_handler(alert, None)
    trigger = ObservationTrigger.objects.get()
    assert "the classifier's operating point, with GW context" in trigger.reason
    assert "CBC, significant, FAR 9.1e-14 Hz, HasNS 0.95" in trigger.reason
    assert trigger.details["lvk_gate"]["passes"] is True and trigger.details["lvk_gate"]["has_ns"] == 0.95


@pytest.mark.django_db
def test_a_black_hole_merger_triggers_no_kilonova_follow_up(tom, settings, django_capture_on_commit_callbacks):
    from tom_mma.handlers.derived import derived_alert_handler
    from tom_mma.models import GWEvent, ObservationTrigger

    _deliver("preliminary", django_capture_on_commit_callbacks)
    # the same event as if LVK had said BBH
    GWEvent.objects.filter(superevent_id="MS181101ab").update(
        properties={"HasNS": 0.0, "HasRemnant": 0.0}, classification={"BBH": 0.99, "Terrestrial": 0.01}
    )
    alert = alert_dict(kilonova_score=0.97, gw_event="MS181101ab", candidate=INSIDE)
    with django_capture_on_commit_callbacks(execute=True):
        result = derived_alert_handler(alert, None)
    assert result.triggers == () and ObservationTrigger.objects.count() == 0
    # allowed by the setting: the same alert (another id) is followed up
    with override_settings(TOM_MMA={"ACCEPT_MOCK_EVENTS": True, "OBSERVATION_MIN_HAS_NS": 0.0}):
        with django_capture_on_commit_callbacks(execute=True):
            derived_alert_handler(alert_dict(kilonova_score=0.97, gw_event="MS181101ab", candidate=INSIDE), None)
    assert ObservationTrigger.objects.count() == 1


# -- the broker's side: GW context and stored features -------------------------------------------------------
@pytest.mark.django_db
def test_gw_context_of_a_candidate_from_the_event_and_its_sky_map(tom, django_capture_on_commit_callbacks):
    from tom_mma_broker.classifier_context import gw_context_for
    from tom_mma_broker.models import Candidate

    inside = Candidate.objects.create(name="in", ra=INSIDE["ra"], dec=INSIDE["dec"], gw_event="MS181101ab")
    assert gw_context_for(inside) is None  # the event is not known yet
    _deliver("preliminary", django_capture_on_commit_callbacks)
    context = gw_context_for(inside)
    # 2018-11-01T22:22:46.654Z; the most probable position is inside the 90% region at ~40 Mpc (user guide)
    assert context.merger_mjd == pytest.approx(58423.93248442, abs=1e-6)
    assert context.credible_level < 0.9 and 20 < context.distance_mpc < 60
    assert gw_context_for(Candidate.objects.create(name="none", ra=1.0, dec=2.0)) is None


@pytest.mark.django_db
def test_the_broker_stores_the_operating_point_decision_with_the_features(tom, settings):
    from tom_mma_broker.classification import score_candidate
    from tom_mma_broker.classifier import load_model
    from tom_mma_broker.models import Candidate, CandidatePoint

    settings.TOM_MMA_BROKER = {**settings.TOM_MMA_BROKER, "PUBLISH_ENABLED": False}
    cand = Candidate.objects.create(name="one", ra=10.0, dec=10.0)
    CandidatePoint.objects.create(candidate=cand, point_id="p1", mjd=60000.0, band="ztfg", magnitude=19.0,
                                  magnitude_error=0.05, upper_limit=False)  # fmt: skip
    row = score_candidate(cand.pk)
    op = load_model().operating_point
    assert row.features["op_is_candidate"] == 0.0  # one detection, no GW context: never
    assert row.features["op_gw_context"] == 0.0 and row.features["op_threshold"] == op["threshold"]
    assert 0.0 <= row.features["op_score_low"] <= row.features["op_score_high"] <= 1.0
    assert not math.isnan(row.features["n_detections"])
