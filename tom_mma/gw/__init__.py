"""Gravitational-wave layer of tom_mma: LVK notices, multi-order sky maps, candidate ranking, retractions.

Modules
-------
notices
    One parser for both LVK transports (Avro on Hopskotch ``igwn.gwalert``, JSON on GCN Kafka
    ``gcn.notices.igwn.gwalert``), yielding a frozen :class:`~tom_mma.gw.notices.GWNotice`.
skymaps
    Multi-order (NUNIQ) sky map math: summary figures and fast ranking of positions.
events
    The service layer: store notices, events and sky map versions; rank Targets; retraction cascade.
plotting
    A Mollweide picture of a sky map with its credible contours and candidates (matplotlib, Agg).

Importing this package has no side effects; only ``events``, ``views`` and ``receivers`` touch Django models.
"""
