"""The REST API of ``tom_mma_broker``, on the TOM's shared API router under ``/api/mma-broker/``.

The archive (metadata in the list, payload on the detail), the quarantine (with the reason), and the
broker's candidates with their kilonova-score history. Read-only; who sees what:
:mod:`tom_mma_broker.visibility`. :func:`tom_mma_broker.api.routes.register` is called from the app
config's ``ready()``. Reference: ``docs/api.md``.
"""
