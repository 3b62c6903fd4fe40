"""A robotic facility that runs on this machine, so that the request path works offline.

It implements the whole TOM Toolkit facility interface. A request is accepted at once (``PENDING``),
is ``SCHEDULED`` some seconds later and ``COMPLETED`` some seconds after that; it can be cancelled
until it completes. The state follows from the times stored at submission in
:class:`tom_mma.models.SimulatedObservation`, so it survives restarts and is the same in every process;
``manage.py updatestatus`` refreshes the ``ObservationRecord`` rows as for any facility.

Configure it in the TOM's settings (every key optional)::

    TOM_FACILITY_CLASSES = [..., "tom_mma.facilities.simulated.SimulatedFacility"]
    FACILITIES = {
        "SIMULATED": {
            "SCHEDULE_AFTER_SECONDS": 30,    # PENDING -> SCHEDULED
            "COMPLETE_AFTER_SECONDS": 300,   # SCHEDULED -> COMPLETED, counted from submission
            "DEC_LIMITS": [-90.0, 90.0],     # targets outside are rejected by validation
            "SITE": {"sitecode": "sim", "latitude": -30.17, "longitude": -70.80, "elevation": 2200.0},
        },
    }

LCO or any other TOM facility takes its place by settings (``TOM_MMA['OBSERVATION_FACILITY']``).
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Any

from crispy_forms.layout import Column, Div, Row
from django import forms
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from tom_observations.facility import BaseRoboticObservationFacility, BaseRoboticObservationForm
from tom_observations.observation_template import GenericTemplateForm
from tom_targets.models import Target

from tom_mma.models import SimulatedObservation

__all__ = ["SimulatedFacility", "SimulatedObservationForm", "simulated_settings"]

logger = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {
    "SCHEDULE_AFTER_SECONDS": 30.0,
    "COMPLETE_AFTER_SECONDS": 300.0,
    "DEC_LIMITS": [-90.0, 90.0],
    "SITE": {"sitecode": "sim", "latitude": -30.17, "longitude": -70.80, "elevation": 2200.0},
}

BANDS = [("g", "g"), ("r", "r"), ("i", "i"), ("z", "z")]

PENDING, SCHEDULED, COMPLETED, CANCELED = "PENDING", "SCHEDULED", "COMPLETED", "CANCELED"
SUCCESSFUL_STATES = [COMPLETED]
FAILED_STATES = [CANCELED]


def simulated_settings() -> dict[str, Any]:
    """``settings.FACILITIES['SIMULATED']`` over the defaults (read on each call)."""
    configured = (getattr(settings, "FACILITIES", None) or {}).get("SIMULATED") or {}
    return {**DEFAULTS, **configured}


class SimulatedObservationForm(BaseRoboticObservationForm):
    """An imaging request: a band, an exposure time and a number of exposures."""

    name = forms.CharField(max_length=200)
    band = forms.ChoiceField(choices=BANDS, initial="r")
    exposure_time = forms.FloatField(min_value=1.0, max_value=3600.0, initial=300.0, help_text="seconds")
    exposure_count = forms.IntegerField(min_value=1, max_value=20, initial=1)

    def layout(self):
        return Div(
            "name",
            Row(
                Column("band", css_class="col"),
                Column("exposure_time", css_class="col"),
                Column("exposure_count", css_class="col"),
            ),
        )

    def is_valid(self) -> bool:
        # the facility's own validation, as the OCS forms do, so that the page shows its errors
        if not super().is_valid():
            return False
        facility = getattr(self, "facility", None) or SimulatedFacility()
        result = facility.validate_observation(self.observation_payload())
        for error in result["errors"]:
            self.add_error(None, error)
        return not self.errors


class SimulatedTemplateForm(GenericTemplateForm):
    """Observation template of the simulated facility."""

    band = forms.ChoiceField(choices=BANDS, initial="r")
    exposure_time = forms.FloatField(min_value=1.0, max_value=3600.0, initial=300.0)
    exposure_count = forms.IntegerField(min_value=1, max_value=20, initial=1)


class SimulatedFacility(BaseRoboticObservationFacility):
    """A facility on this machine: accepts, schedules and completes requests over time."""

    name = "Simulated"
    observation_forms = {"IMAGING": SimulatedObservationForm}
    button_label = "Simulated"
    button_tooltip = "A facility simulated on this TOM's machine"

    # --- forms ------------------------------------------------------------------------------
    def get_form(self, observation_type: str) -> type[forms.Form]:
        return self.observation_forms.get(observation_type, SimulatedObservationForm)

    def get_template_form(self, observation_type: str) -> type[forms.Form]:
        return SimulatedTemplateForm

    # --- requests ---------------------------------------------------------------------------
    def validate_observation(self, observation_payload: dict) -> dict[str, list[str]]:
        """Check a request without submitting it: ``{"errors": [...]}``, empty when valid."""
        errors = []
        params = observation_payload.get("params", {})
        target = Target.objects.filter(pk=observation_payload.get("target_id")).first()
        if target is None:
            errors.append(f"no target with id {observation_payload.get('target_id')!r}")
        elif target.ra is None or target.dec is None:
            errors.append(f"target {target.name} has no position")
        else:
            dec_min, dec_max = simulated_settings()["DEC_LIMITS"]
            if not dec_min <= target.dec <= dec_max:
                errors.append(f"target {target.name} (dec {target.dec:.2f}) is outside [{dec_min}, {dec_max}]")
        if params.get("band") not in dict(BANDS):
            errors.append(f"unknown band {params.get('band')!r}")
        exposure_time = params.get("exposure_time")
        if not isinstance(exposure_time, int | float) or exposure_time <= 0:
            errors.append("exposure_time must be a positive number of seconds")
        return {"errors": errors}

    def submit_observation(self, observation_payload: dict) -> list[str]:
        """Accept a request; return its observation id.

        Raises
        ------
        ValueError
            If the request does not validate.
        """
        errors = self.validate_observation(observation_payload)["errors"]
        if errors:
            raise ValueError(f"the simulated facility rejected the request: {'; '.join(errors)}")
        config = simulated_settings()
        schedule_after = float(config["SCHEDULE_AFTER_SECONDS"])
        complete_after = max(float(config["COMPLETE_AFTER_SECONDS"]), schedule_after)
        now = timezone.now()
        request = SimulatedObservation.objects.create(
            observation_id=f"sim-{uuid.uuid4()}",
            target_id=observation_payload.get("target_id"),
            parameters=observation_payload.get("params", {}),
            submitted=now,
            scheduled_at=now + timedelta(seconds=schedule_after),
            completed_at=now + timedelta(seconds=complete_after),
        )
        logger.info("simulated facility accepted %s for target %s", request.observation_id, request.target_id)
        return [request.observation_id]

    def cancel_observation(self, observation_id: str) -> bool:
        """Cancel a request that has not completed; True if it is (now or already) cancelled."""
        with transaction.atomic():
            request = SimulatedObservation.objects.select_for_update().filter(observation_id=observation_id).first()
            if request is None:
                return False
            now = timezone.now()
            if request.canceled_at is None:
                if now >= request.completed_at:
                    return False
                request.canceled_at = now
                request.save(update_fields=["canceled_at"])
        logger.info("simulated facility cancelled %s", observation_id)
        return True

    def get_observation_status(self, observation_id: str) -> dict[str, Any]:
        """``{"state", "scheduled_start", "scheduled_end"}`` of a request, now."""
        request = SimulatedObservation.objects.get(observation_id=observation_id)
        return self.state_at(request, timezone.now())

    @staticmethod
    def state_at(request: Any, when) -> dict[str, Any]:
        """The status of ``request`` at time ``when`` (pure: depends only on the stored times)."""
        if request.canceled_at is not None and request.canceled_at <= when:
            scheduled = request.canceled_at >= request.scheduled_at
            return {
                "state": CANCELED,
                "scheduled_start": request.scheduled_at if scheduled else None,
                "scheduled_end": request.completed_at if scheduled else None,
            }
        if when < request.scheduled_at:
            state = PENDING
        elif when < request.completed_at:
            state = SCHEDULED
        else:
            state = COMPLETED
        scheduled = state != PENDING
        return {
            "state": state,
            "scheduled_start": request.scheduled_at if scheduled else None,
            "scheduled_end": request.completed_at if scheduled else None,
        }

    def get_terminal_observing_states(self) -> list[str]:
        return SUCCESSFUL_STATES + FAILED_STATES

    def get_failed_observing_states(self) -> list[str]:
        return list(FAILED_STATES)

    def get_observation_url(self, observation_id: str) -> str:
        # there is no remote portal; the TOM's own observation page is the place to look
        return ""

    def data_products(self, observation_id: str, product_id: str | None = None) -> list[dict]:
        # the simulation observes nothing
        return []

    # --- sites ------------------------------------------------------------------------------
    def get_observing_sites(self) -> dict[str, dict[str, Any]]:
        site = simulated_settings()["SITE"]
        return {"Simulated site": dict(site)}

    def get_facility_weather_urls(self) -> dict[str, Any]:
        return {
            "code": self.name,
            "sites": [{"code": site["sitecode"], "weather_url": ""} for site in self.get_observing_sites().values()],
        }

    def get_facility_status(self) -> dict[str, Any]:
        return {
            "code": self.name,
            "sites": [
                {
                    "code": site["sitecode"],
                    "telescopes": [{"code": f"{site['sitecode']}.sim.1m", "status": "AVAILABLE"}],
                }
                for site in self.get_observing_sites().values()
            ],
        }
