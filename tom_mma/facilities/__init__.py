"""Observation facilities shipped with tom_mma (``TOM_FACILITY_CLASSES`` entries)."""
