"""rankcandidates, the event pages and the sky map picture, on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.urls import include, path
from hop.models import AvroBlob
from PIL import Image
from tom_targets.models import Target

from tom_mma import receivers
from tom_mma.gw.skymaps import read_multiorder
from tom_mma.handlers.lvk import igwn_gwalert_handler
from tom_mma.models import GWEvent

pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]

DATA = Path(__file__).parent / "data" / "lvk"
BEST = (194.30419921874997, -17.856895095545468)

urlpatterns = [
    path("gw/", include("tom_mma.gw.urls")),
    path("alerts/", include("tom_alerts.urls", namespace="alerts")),  # the navbar links it
    path("", include("tom_common.urls")),
]


@pytest.fixture
def event(settings, django_capture_on_commit_callbacks):
    settings.TOM_MMA = {"ACCEPT_MOCK_EVENTS": True}
    receivers.connect()
    with django_capture_on_commit_callbacks(execute=True):
        for name, ra, dec in [
            ("AT-best", *BEST),
            ("AT-near", 196.0, -18.5),
            ("AT-far", 10.0, 60.0),
            ("AT-edge", 193.0, -22.0),
        ]:
            Target.objects.create(name=name, type="SIDEREAL", ra=ra, dec=dec, permissions="PUBLIC")
        Target.objects.create(name="comet", type="NON_SIDEREAL", permissions="PUBLIC")
        igwn_gwalert_handler(AvroBlob.load_file(DATA / "MS181101ab-preliminary.avro"))
    return GWEvent.objects.get()


def test_rankcandidates_json(event):
    out = io.StringIO()
    call_command("rankcandidates", "MS181101ab", "--json", stdout=out)
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    skymap = read_multiorder(AvroBlob.load_file(DATA / "MS181101ab-preliminary.avro").content["event"]["skymap"])
    expected = sorted(Target.objects.exclude(ra=None), key=lambda t: float(skymap.rank(t.ra, t.dec).credible_level))
    assert [r["name"] for r in rows] == [t.name for t in expected]
    for r in rows:
        assert r["credible_level"] == float(skymap.rank(r["ra"], r["dec"]).credible_level)
        assert r["probdensity"] == float(skymap.rank(r["ra"], r["dec"]).probdensity)
    levels = [r["credible_level"] for r in rows]
    assert levels == sorted(levels) and 0 < levels[0] < 0.001 and levels[-1] <= 1
    for r in rows:
        assert {"name", "ra", "dec", "probdensity", "credible_level", "distance_mean", "distance_std"} <= set(r)
    best = rows[0]
    assert (best["ra"], best["dec"]) == BEST
    assert best["probdensity"] > 100 and 30 < best["distance_mean"] < 50 and best["distance_std"] > 0
    assert rows[-1]["name"] == "AT-far" and rows[-1]["probdensity"] < 1e-10


def test_rankcandidates_table_and_errors(event):
    out = io.StringIO()
    call_command("rankcandidates", "MS181101ab", "--rank", "--limit", "2", stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("MS181101ab") and "distance" in lines[1]
    assert len(lines) == 4 and lines[2].startswith("AT-best")
    with pytest.raises(CommandError, match="no GW event"):
        call_command("rankcandidates", "S000000a")


def test_event_pages(client, event):
    user = User.objects.create_superuser("admin", "a@example.org", "pw")
    client.force_login(user)
    listing = client.get("/gw/")
    assert listing.status_code == 200 and b"MS181101ab" in listing.content
    page = client.get("/gw/MS181101ab/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "AT-best" in html and "Preliminary" in html and "comet" not in html
    assert html.index("AT-best") < html.index("AT-far")
    assert "/gw/MS181101ab/skymap.png" in html
    assert client.get("/gw/S000000a/").status_code == 404


def test_skymap_picture_renders_headless(client, event):
    client.force_login(User.objects.create_superuser("admin", "a@example.org", "pw"))
    response = client.get("/gw/MS181101ab/skymap.png")
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    image = Image.open(io.BytesIO(response.content))
    assert image.size[0] > 800 and image.size[1] > 300
    colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 100  # a picture, not a blank canvas
    assert client.get("/gw/MS181101ab/skymap.png?version=999999").status_code == 404
