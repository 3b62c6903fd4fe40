"""Versioned message schemas tom_mma reads (frozen dataclasses with ``from_dict``/``to_dict``)."""
