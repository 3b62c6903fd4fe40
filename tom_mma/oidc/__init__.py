"""Institutional login (OpenID Connect) for a TOM, over mozilla-django-oidc.

- :mod:`~tom_mma.oidc.environment`: the settings from environment variables.
- :mod:`~tom_mma.oidc.provider`: the provider's endpoints, set or discovered.
- :mod:`~tom_mma.oidc.accounts`: the TOM user of a login (matched on issuer and subject), its groups and rights.
- :mod:`~tom_mma.oidc.groups`: the group claim mapped to TOM groups.
- :mod:`~tom_mma.oidc.views`, :mod:`~tom_mma.oidc.urls`: the login views, failing with a page that says why.

The backend is :class:`tom_mma.auth.OIDCBackend`. This package imports nothing at import time.
"""
