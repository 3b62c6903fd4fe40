"""System checks of the derived-alert flow (tom_mma.checks_derived): each id, raised and not."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.test import override_settings
from django.urls import include, path

from tom_mma.checks_derived import check_alert_broker, check_observation_rules, check_simulated_facility

urlpatterns = [path("", include("tom_common.urls")), path("alerts/", include("tom_alerts.urls", namespace="alerts"))]
WITHOUT_ALERT_URLS = "tests.urls_without_alerts"
BROKER = ["tom_mma.alerts.DerivedAlertBroker"]
SIMULATED = ["tom_mma.facilities.simulated.SimulatedFacility"]


def ids(messages) -> list[str]:
    return [m.id for m in messages]


@override_settings(TOM_ALERT_CLASSES=BROKER, ROOT_URLCONF=__name__)
def test_broker_with_tom_alerts_and_its_urls_passes():
    assert check_alert_broker() == []


@override_settings(TOM_ALERT_CLASSES=BROKER, ROOT_URLCONF=__name__)
def test_e040_broker_without_tom_alerts():
    installed = [a.name for a in apps.get_app_configs() if a.name != "tom_alerts"]
    with override_settings(INSTALLED_APPS=installed):
        messages = check_alert_broker()
    assert ids(messages) == ["tom_mma.E040"]
    assert "'tom_alerts' is not in INSTALLED_APPS" in messages[0].msg


@override_settings(TOM_ALERT_CLASSES=[], ROOT_URLCONF=__name__)
def test_no_e040_when_the_broker_is_not_configured():
    installed = [a.name for a in apps.get_app_configs() if a.name != "tom_alerts"]
    with override_settings(INSTALLED_APPS=installed):
        assert check_alert_broker() == []


@override_settings(ROOT_URLCONF=WITHOUT_ALERT_URLS)
def test_e041_tom_alerts_urls_missing():
    messages = check_alert_broker()
    assert ids(messages) == ["tom_mma.E041"]
    assert "include('tom_alerts.urls', namespace='alerts')" in messages[0].hint


@override_settings(TOM_FACILITY_CLASSES=SIMULATED)
def test_default_rules_and_facility_pass():
    assert check_observation_rules() == []


@pytest.mark.parametrize(
    ("tom_mma", "expected"),
    [
        ({"OBSERVATION_RULES": ["tom_mma.rules.Nope"]}, ["tom_mma.E042"]),
        ({"OBSERVATION_RULES": ["tom_mma.targets.Target"]}, ["tom_mma.E042"]),
        ({"OBSERVATION_SCORE_THRESHOLD": 1.5}, ["tom_mma.E043"]),
        ({"OBSERVATION_CREDIBLE_LEVEL": "0.9"}, ["tom_mma.E043"]),
        ({"OBSERVATION_WINDOW_HOURS": 0}, ["tom_mma.E046"]),
        ({"OBSERVATION_WINDOW_HOURS": "24"}, ["tom_mma.E046"]),
        ({"OBSERVATION_WINDOW_HOURS": 2.5}, []),
        ({"OBSERVATION_FACILITY": "LCO-not-configured"}, ["tom_mma.W044"]),
        ({"OBSERVATION_RULES": [], "OBSERVATION_FACILITY": "LCO-not-configured"}, []),  # no rules: no requests
    ],
)
def test_rule_checks(tom_mma, expected):
    with override_settings(TOM_FACILITY_CLASSES=SIMULATED, TOM_MMA=tom_mma):
        assert ids(check_observation_rules()) == expected


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({}, []),
        ({"SCHEDULE_AFTER_SECONDS": 0, "COMPLETE_AFTER_SECONDS": 0}, []),
        ({"SCHEDULE_AFTER_SECONDS": -1}, ["tom_mma.E045"]),
        ({"SCHEDULE_AFTER_SECONDS": 100, "COMPLETE_AFTER_SECONDS": 10}, ["tom_mma.E045"]),
        ({"COMPLETE_AFTER_SECONDS": "soon"}, ["tom_mma.E045"]),
    ],
)
def test_e045_simulated_facility(config, expected):
    with override_settings(FACILITIES={"SIMULATED": config}):
        assert ids(check_simulated_facility()) == expected
