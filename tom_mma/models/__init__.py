"""Models of ``tom_mma``; one module per area, re-exported here."""

from .derived import *  # noqa: F403
from .gw import *  # noqa: F403
from .oidc import *  # noqa: F403
from .transients import *  # noqa: F403
