"""The REST API of ``tom_mma`` (Django REST framework), on the TOM's shared API router under ``/api/mma/``.

:func:`tom_mma.api.routes.register` adds the viewsets to ``tom_common.api_router.SharedAPIRootRouter``; the
app config calls it in ``ready()``, so that a TOM gets the API by installing the app (tomtoolkit's
``tom_common.urls`` mounts the shared router at ``api/``). Read-only; who sees what:
:mod:`tom_mma.visibility`. Reference: ``docs/api.md``.
"""
