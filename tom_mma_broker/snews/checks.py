"""System checks of the SNEWS decider's settings (``tom_mma_broker.E020``)."""

from __future__ import annotations

from django.core import checks

from ..conf import broker_settings

__all__ = ["check_snews_settings"]


@checks.register()
def check_snews_settings(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """tom_mma_broker.E020: the decider's settings are usable.

    The window, cache lifetime and heartbeat window are positive numbers, the cache lifetime is at least the
    window, the false-alarm rates are positive numbers, the topics named.
    """
    errors = []

    def error(text: str) -> None:
        errors.append(checks.Error(text, hint="See docs/snews.md.", id="tom_mma_broker.E020"))

    values = {}
    for key in ("SNEWS_WINDOW_S", "SNEWS_EXPIRY_S", "SNEWS_HEARTBEAT_WINDOW_S"):
        value = getattr(broker_settings, key)
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            error(f"TOM_MMA_BROKER['{key}'] must be a positive number of seconds, not {value!r}")
        else:
            values[key] = value
    if len(values) == 3 and values["SNEWS_EXPIRY_S"] < values["SNEWS_WINDOW_S"]:
        error("TOM_MMA_BROKER['SNEWS_EXPIRY_S'] is shorter than SNEWS_WINDOW_S: no coincidence could form")
    rates = broker_settings.SNEWS_FALSE_ALARM_RATES
    if not isinstance(rates, dict) or any(
        isinstance(v, bool) or not isinstance(v, int | float) or not v > 0 for v in rates.values()
    ):
        error("TOM_MMA_BROKER['SNEWS_FALSE_ALARM_RATES'] must map detector names to positive rates per second")
    topics = ["SNEWS_ALERT_TOPIC", "SNEWS_TEST_ALERT_TOPIC"]
    topics += ["SNEWS_FIREDRILL_ALERT_TOPIC", "SNEWS_NO_COINCIDENCE_TOPIC"]
    for key in topics:
        if not isinstance(getattr(broker_settings, key), str) or not getattr(broker_settings, key):
            error(f"TOM_MMA_BROKER['{key}'] must name a topic")
    return errors
