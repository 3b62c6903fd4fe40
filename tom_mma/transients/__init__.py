"""Gamma-ray, X-ray and neutrino events: GCN JSON notices and SNEWS alerts (:mod:`.notices`, :mod:`.events`)."""
