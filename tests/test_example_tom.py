"""The example TOM works offline: its pages take Bootstrap from the TOM itself, not from a CDN."""

from __future__ import annotations

import pytest
from django.contrib.staticfiles import finders


@pytest.mark.django_db
def test_pages_link_the_bootstrap_the_tom_serves(client):
    page = client.get("/accounts/login/").content.decode()
    assert "cdn.jsdelivr.net/npm/bootstrap" not in page
    for name in ("bootstrap.min.css", "bootstrap.bundle.min.js"):
        url = f"/static/vendor/bootstrap-5.3.8/{name}"
        assert url in page
        found = finders.find(url.removeprefix("/static/"))
        assert found, f"{url} is linked but not among the static files"
        assert "Bootstrap" in open(found, encoding="utf-8").read(400)
