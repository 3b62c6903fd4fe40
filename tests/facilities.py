"""Facilities for the tests: the simulated facility, slowed down as an observatory's API on a bad night."""

from __future__ import annotations

import os
import time
from pathlib import Path

from tom_mma.facilities.simulated import SimulatedFacility

__all__ = ["BlockingFacility"]


class BlockingFacility(SimulatedFacility):
    """Answers ``submit_observation`` only once the file ``TOM_MMA_TEST_RELEASE_FILE`` exists (at most 30 s).

    As a facility whose API takes 30 s to answer; the test decides when it answers, so that nothing in the
    test depends on timing.
    """

    name = "Blocking"

    def submit_observation(self, observation_payload: dict) -> list[str]:
        release = Path(os.environ.get("TOM_MMA_TEST_RELEASE_FILE", "/nonexistent"))
        deadline = time.monotonic() + 30
        while not release.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        return super().submit_observation(observation_payload)
