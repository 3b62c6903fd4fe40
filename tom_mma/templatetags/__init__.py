"""Template tags of ``tom_mma``."""
