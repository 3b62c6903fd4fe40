"""Settings of the processes the chaos harness runs (``bench/chaos.py``): the example TOM's, plus

* mock events taken (the harness's GW event is the GW170817 replay, a mock event);
* the observation rule sending to :class:`chaos_facility.ChaosFacility`, a simulated facility that the
  harness can make hang or fail;
* the beat's sweeps every few seconds instead of every minute, so a fault's recovery is seen in seconds;
* the reliable stream's reconnect delay capped at 5 s.

Nothing here is for a real TOM.
"""

import os

from example_tom.settings import *  # noqa: F403
from example_tom.settings import CELERY_BEAT_SCHEDULE, TOM_FACILITY_CLASSES, TOM_MMA, TOM_MMA_BROKER

SWEEP_S = float(os.environ.get("TOM_MMA_CHAOS_SWEEP_S", "3"))

TOM_MMA = {**TOM_MMA, "ACCEPT_MOCK_EVENTS": True, "OBSERVATION_FACILITY": "Chaos"}
TOM_MMA_BROKER = {**TOM_MMA_BROKER, "RECONNECT_MAX_S": 5.0, "RECONNECT_BASE_S": 0.5}
TOM_FACILITY_CLASSES = [*TOM_FACILITY_CLASSES, "chaos_facility.ChaosFacility"]
FACILITIES = {"SIMULATED": {"SCHEDULE_AFTER_SECONDS": 5, "COMPLETE_AFTER_SECONDS": 30}}
CELERY_BEAT_SCHEDULE = {
    **{name: {**entry, "schedule": min(entry["schedule"], SWEEP_S)} for name, entry in CELERY_BEAT_SCHEDULE.items()},
    # a trigger whose task was lost is sent again after 10 s (production: minutes)
    "tom_mma-sweep": {"task": "tom_mma.tasks.sweep", "schedule": SWEEP_S, "kwargs": {"pending_s": 10.0}},
}

# the facility tasks on a queue of their own, with a worker of its own (docs/running.md): a hung facility then
# holds only that worker, and classification goes on
FACILITY_QUEUE = os.environ.get("TOM_MMA_CHAOS_FACILITY_QUEUE", "")
if FACILITY_QUEUE:
    CELERY_TASK_ROUTES = {
        name: {"queue": FACILITY_QUEUE}
        for name in (
            "tom_mma.tasks.submit_trigger_task",
            "tom_mma.tasks.update_observation_statuses",
            "tom_mma.gw.tasks.cancel_observations_task",
        )
    }
