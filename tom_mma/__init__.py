"""tom_mma: the TOM side of tom-mma (topic handlers, GW events, derived alerts, query forms)."""

__version__ = "0.1.0.dev0"
