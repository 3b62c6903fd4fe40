"""System checks of the derived-alert flow (ids ``tom_mma.E040``-``E049``, ``tom_mma.W040``-``W049``).

Registered when imported; ``tom_mma.checks`` imports this module.

- ``tom_mma.E040``: ``TOM_ALERT_CLASSES`` names the derived-alert broker but ``tom_alerts`` is not installed.
- ``tom_mma.E041``: ``tom_alerts`` is installed but its URLs are not included (namespace ``alerts``).
- ``tom_mma.E042``: an ``OBSERVATION_RULES`` entry does not import, is not an ``ObservationRule``
  subclass, has no name, or shares its name with another rule.
- ``tom_mma.E043``: ``OBSERVATION_SCORE_THRESHOLD`` or ``OBSERVATION_CREDIBLE_LEVEL`` is not in [0, 1].
- ``tom_mma.W044``: rules are configured but ``OBSERVATION_FACILITY`` is not a facility of this TOM.
- ``tom_mma.E045``: ``FACILITIES['SIMULATED']`` has negative or inverted durations.
- ``tom_mma.E046``: ``OBSERVATION_WINDOW_HOURS`` is not a positive number.
"""

from __future__ import annotations

from django.apps import apps
from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.urls import NoReverseMatch, reverse

__all__ = [
    "BROKER_PATH",
    "check_alert_broker",
    "check_observation_rules",
    "check_simulated_facility",
]

BROKER_PATH = "tom_mma.alerts.DerivedAlertBroker"


def _broker_configured() -> bool:
    return BROKER_PATH in (getattr(settings, "TOM_ALERT_CLASSES", None) or [])


@checks.register()
def check_alert_broker(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """tom_mma.E040 / E041: the derived-alert broker needs tom_alerts; tom_alerts needs its URLs."""
    messages: list[checks.CheckMessage] = []
    if _broker_configured() and not apps.is_installed("tom_alerts"):
        messages.append(
            checks.Error(
                f"TOM_ALERT_CLASSES names {BROKER_PATH}, but 'tom_alerts' is not in INSTALLED_APPS.",
                hint="Add 'tom_alerts' to INSTALLED_APPS (tomtoolkit 3.1's tom_setup leaves it out) and migrate.",
                id="tom_mma.E040",
            )
        )
    if apps.is_installed("tom_alerts"):
        try:
            # tom_alerts' navigation-bar link reverses 'alerts:list' on every page
            reverse("alerts:list")
        except NoReverseMatch:
            messages.append(
                checks.Error(
                    "'tom_alerts' is installed but its URLs are not included under the namespace 'alerts': "
                    "every page with the navigation bar fails, and the query pages are unreachable.",
                    hint="Add path('alerts/', include('tom_alerts.urls', namespace='alerts')) to the TOM's urls.py "
                    "(tomtoolkit 3.1's tom_common.urls does not include them).",
                    id="tom_mma.E041",
                )
            )
    return messages


@checks.register()
def check_observation_rules(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """tom_mma.E042 / E043 / W044 / E046: the observation rules load and their settings make sense."""
    from tom_mma import rules

    messages: list[checks.CheckMessage] = []
    try:
        loaded = rules.load_rules()
    except ImproperlyConfigured as exc:
        messages.append(
            checks.Error(
                str(exc), hint="Each entry is a dotted path to an ObservationRule subclass.", id="tom_mma.E042"
            )
        )
        loaded = []
    for key in ("OBSERVATION_SCORE_THRESHOLD", "OBSERVATION_CREDIBLE_LEVEL"):
        value = rules.setting(key)
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
            messages.append(
                checks.Error(f"TOM_MMA['{key}'] must be a number in [0, 1], not {value!r}.", id="tom_mma.E043")
            )
    hours = rules.setting("OBSERVATION_WINDOW_HOURS")
    if isinstance(hours, bool) or not isinstance(hours, int | float) or not hours > 0:
        messages.append(
            checks.Error(
                f"TOM_MMA['OBSERVATION_WINDOW_HOURS'] must be a positive number of hours, not {hours!r}.",
                hint="The window of a request whose facility form asks for one, from the trigger on (default 24).",
                id="tom_mma.E046",
            )
        )
    if loaded:
        from tom_observations.facility import get_service_classes

        facility = rules.setting("OBSERVATION_FACILITY")
        try:
            known = get_service_classes()
        except ImportError as exc:
            known = {}
            detail = f" ({exc})"
        else:
            detail = ""
        if facility not in known:
            messages.append(
                checks.Warning(
                    f"TOM_MMA['OBSERVATION_FACILITY'] is {facility!r}, which is not a facility of this TOM{detail}; "
                    "observation requests of the rules will fail.",
                    hint="Add its class to TOM_FACILITY_CLASSES, e.g. "
                    "'tom_mma.facilities.simulated.SimulatedFacility' (name 'Simulated').",
                    id="tom_mma.W044",
                )
            )
    return messages


@checks.register()
def check_simulated_facility(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """tom_mma.E045: the simulated facility's durations are numbers, not negative, in order."""
    from tom_mma.facilities.simulated import simulated_settings

    config = simulated_settings()
    schedule, complete = config["SCHEDULE_AFTER_SECONDS"], config["COMPLETE_AFTER_SECONDS"]
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (schedule, complete))
    if not numbers or schedule < 0 or complete < schedule:
        return [
            checks.Error(
                "FACILITIES['SIMULATED'] needs 0 <= SCHEDULE_AFTER_SECONDS <= COMPLETE_AFTER_SECONDS, "
                f"not {schedule!r} and {complete!r}.",
                id="tom_mma.E045",
            )
        ]
    return []
