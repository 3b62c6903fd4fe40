"""A tiny OpenID Connect provider (django-oauth-toolkit) for the OIDC login tests, run in its own process.

``tests/test_oidc_provider.py`` starts it with ``runserver --noreload`` on a free loopback port, with its
settings (:mod:`tests.oidc_provider.settings`) from environment variables: a SQLite file and an RSA key
the test generates in a temporary directory. ``manage.py provider`` (this app's command) creates users with
their groups and the TOM's client.
"""
