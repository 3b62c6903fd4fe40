"""tom_mma_broker: the multi-messenger alert broker inside the TOM (reliable stream, archive, publishers)."""

from tom_mma import __version__

__all__ = ["__version__"]
