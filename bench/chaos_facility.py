"""A simulated facility the chaos harness can make hang or fail (``bench/chaos.py``).

The mode is the content of the file ``$TOM_MMA_CHAOS_FACILITY_FILE``: ``ok`` (or no file), ``hang`` (the
API takes 20 s, then answers with a server error, as an observatory on a bad night) or ``error`` (a server
error at once); ``hang N`` hangs N seconds instead of 20. Read on each request, so the harness switches it
while the system runs.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from tom_mma.facilities.simulated import SimulatedFacility

__all__ = ["ChaosFacility"]


def _mode() -> str:
    path = os.environ.get("TOM_MMA_CHAOS_FACILITY_FILE")
    try:
        return Path(path).read_text().strip() if path else "ok"
    except FileNotFoundError:
        return "ok"


class ChaosFacility(SimulatedFacility):
    """The simulated facility, unless the harness says it hangs or fails."""

    name = "Chaos"

    def submit_observation(self, observation_payload: dict) -> list[str]:
        mode, _, seconds = _mode().partition(" ")
        if mode == "hang":
            hang_s = float(seconds or 20)
            time.sleep(hang_s)
            raise TimeoutError(f"chaos facility: no answer in {hang_s:g} s (hung)")
        if mode == "error":
            raise ConnectionError("chaos facility: connection refused")
        return super().submit_observation(observation_payload)
