"""The GW170817 replay: sky map conversion, LVK notice, photometry schema, ordering, pacing, command.

The sky map and the photometry are the real files shipped as package data
(``tom_mma_broker/gw170817/data``); ``tests/data/gw170817`` holds the expected point ids.
The last test runs the command against the real embedded broker (Tansu).
"""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path

import fastavro
import numpy as np
import pytest
from astropy.io import fits
from django.core.management import CommandError, call_command

from tom_mma_broker.gw170817 import (
    ALL_SELECTION,
    DEFAULT_GW_TOPIC,
    DEFAULT_PHOTOMETRY_TOPIC,
    DEFAULT_SPEED,
    MERGER_MJD,
    MOCK_SUPEREVENT_ID,
    PhotometrySelection,
    ReplayProgress,
    build_notice,
    gw170817_skymap,
    igwn_alert_schema,
    load_photometry,
    notice_from_avro,
    notice_to_avro,
    replay,
    replay_messages,
    validate_notice,
)
from tom_mma_broker.gw170817 import skymap as skymaps
from tom_mma_broker.gw170817.notice import FLAT_SKYMAP
from tom_mma_broker.gw170817.photometry import DEC, OPTICAL_NIR_BANDS, RA, object_aliases
from tom_mma_broker.schemas.photometry import SCHEMA_ID, PhotometryMessage

DATA = Path(__file__).parent / "data" / "gw170817"
SCHEMA_FILE = Path(__file__).resolve().parents[1] / "docs" / "schemas" / "photometry-v1.json"


@pytest.fixture(scope="module")
def flat():
    return skymaps.read_flat_skymap(FLAT_SKYMAP)


@pytest.fixture(scope="module")
def moc():
    return skymaps.read_multiorder_fits(gw170817_skymap())


def _probabilities(table) -> np.ndarray:
    order, _ = skymaps.uniq_to_order_ipix(np.asarray(table["UNIQ"]))
    return np.asarray(table["PROBDENSITY"]) * 4 * np.pi / (12 * 4.0**order)


def _flat_credible_area(prob: np.ndarray, level: float) -> float:
    ranked = np.cumsum(np.sort(prob)[::-1])
    return (np.searchsorted(ranked, level * ranked[-1]) + 1) * 4 * np.pi / prob.size * (180 / np.pi) ** 2


# --- sky map ------------------------------------------------------------------------------------


def test_multiorder_preserves_total_probability(flat, moc):
    columns, _ = flat
    table, _ = moc
    assert _probabilities(table).sum() == pytest.approx(columns["PROB"].sum(), rel=1e-12)
    assert _probabilities(table).sum() == pytest.approx(1.0, abs=1e-9)
    # a valid NUNIQ tiling: no pixel overlaps another and the sphere is covered
    order, ipix = skymaps.uniq_to_order_ipix(np.asarray(table["UNIQ"]))
    finest = ipix << (2 * (7 - order))
    counts = 4 ** (7 - order)
    starts = np.argsort(finest)
    assert np.array_equal(np.cumsum(counts[starts])[:-1], finest[starts][1:])
    assert counts.sum() == 12 * 4**7


def test_multiorder_keeps_most_probable_position_and_credible_areas(flat, moc):
    from astropy_healpix import HEALPix

    columns, _ = flat
    table, _ = moc
    lon, lat = HEALPix(nside=128, order="nested").healpix_to_lonlat([int(np.argmax(columns["PROB"]))])
    ra, dec = skymaps.most_probable_position(table)
    assert (ra, dec) == pytest.approx((lon.deg[0], lat.deg[0]))
    for level in (0.5, 0.9, 0.99):
        expected = _flat_credible_area(columns["PROB"], level)
        assert skymaps.credible_area(table, level) == pytest.approx(expected, rel=1e-3)
    # the published BAYESTAR HLV localisation: 31 deg2 at 90 %
    assert 28 < skymaps.credible_area(table, 0.9) < 36


def test_multiorder_preserves_distance_moments(flat, moc):
    columns, header = flat
    table, moc_header = moc

    def moments(prob, mu, sigma, norm):
        mean, std, _ = skymaps.parameters_to_moments(mu, sigma)
        ok = np.isfinite(mean) & (norm > 0)
        weight = prob[ok] / prob[ok].sum()
        return np.sum(weight * mean[ok]), np.sum(weight * (mean[ok] ** 2 + std[ok] ** 2))

    expected = moments(columns["PROB"], columns["DISTMU"], columns["DISTSIGMA"], columns["DISTNORM"])
    got = moments(_probabilities(table), *(np.asarray(table[c]) for c in ("DISTMU", "DISTSIGMA", "DISTNORM")))
    assert got == pytest.approx(expected, rel=1e-5)
    assert moc_header["DISTMEAN"] == header["DISTMEAN"] == pytest.approx(39.77, abs=0.01)


def test_multiorder_fits_is_lvk_like_and_small(moc):
    data = gw170817_skymap()
    assert len(data) < 300_000
    assert gw170817_skymap.__wrapped__() == data  # deterministic bytes
    table, header = moc
    assert table.colnames == ["UNIQ", "PROBDENSITY", "DISTMU", "DISTSIGMA", "DISTNORM"]
    assert table["UNIQ"].dtype.kind == "i" and table["UNIQ"].dtype.itemsize == 8
    assert str(table["PROBDENSITY"].unit) == "1 / sr"
    assert header["ORDERING"] == "NUNIQ" and header["MOC"] is True and header["INDXSCHM"] == "EXPLICIT"
    assert header["MOCORDER"] == 7
    assert header["OBJECT"] == MOCK_SUPEREVENT_ID
    assert header["DATE-OBS"].startswith("2017-08-17T12:41:04")
    assert header["INSTRUME"] == "H1,L1,V1"
    assert "DISTSTD" in header
    assert any("NOT A REAL ALERT" in str(line) for line in header["HISTORY"])
    # pixels are sorted by UNIQ, as LVK writes them
    assert np.all(np.diff(table["UNIQ"]) > 0)


def test_ring_and_nested_flat_maps_give_the_same_multiorder_map(tmp_path):
    from astropy_healpix import HEALPix

    rng = np.random.default_rng(170817)
    nside, npix = 16, 12 * 16**2
    prob = rng.random(npix) ** 8
    prob /= prob.sum()
    mu, sigma = 40 + 10 * rng.random(npix), 5 + 5 * rng.random(npix)
    norm = skymaps.parameters_to_moments(mu, sigma)[2]
    nested = {"PROB": prob, "DISTMU": mu, "DISTSIGMA": sigma, "DISTNORM": norm}
    ring_index = HEALPix(nside=nside, order="nested").nested_to_ring(np.arange(npix))
    paths = {}
    for ordering in ("NESTED", "RING"):
        cols = []
        for name, values in nested.items():
            stored = np.empty_like(values)
            if ordering == "RING":
                stored[ring_index] = values
            else:
                stored = values
            cols.append(fits.Column(name=name, format="D", array=stored))
        hdu = fits.BinTableHDU.from_columns(cols)
        hdu.header.update({"PIXTYPE": "HEALPIX", "ORDERING": ordering, "NSIDE": nside})
        paths[ordering] = tmp_path / f"{ordering}.fits"
        hdu.writeto(paths[ordering])
    tables = [
        skymaps.flat_to_multiorder(skymaps.read_flat_skymap(paths[o])[0], max_merged_prob=1e-3, min_order=0)
        for o in ("NESTED", "RING")
    ]
    for name in tables[0].colnames:
        assert np.array_equal(tables[0][name], tables[1][name])
    assert len(tables[0]) < npix
    assert _probabilities(tables[0]).sum() == pytest.approx(1.0)


def test_distance_moments_round_trip():
    mu = np.array([40.0, 10.0, -5.0, 100.0, 1.0])
    sigma = np.array([8.0, 20.0, 10.0, 1.0, 50.0])
    mean, std, _ = skymaps.parameters_to_moments(mu, sigma)
    back_mu, back_sigma, _ = skymaps.moments_to_parameters(mean, std)
    assert back_mu == pytest.approx(mu, rel=1e-8)
    assert back_sigma == pytest.approx(sigma, rel=1e-8)
    # no information: inf, 1, 0 (LVK's convention), and an impossible std/mean ratio
    mu2, sigma2, norm2 = skymaps.moments_to_parameters(np.array([np.inf, 10.0]), np.array([1.0, 9.0]))
    assert np.isinf(mu2).all() and np.all(sigma2 == 1) and np.all(norm2 == 0)


@pytest.mark.slow
def test_against_ligo_skymap(moc):
    """Cross-check with ligo.skymap (not a run-time dependency)."""
    pytest.importorskip("ligo.skymap")
    import astropy.units as u
    from astropy.coordinates import SkyCoord
    from ligo.skymap import distance
    from ligo.skymap.io import read_sky_map
    from ligo.skymap.postprocess import crossmatch

    mu, sigma = np.array([40.0, 10.0, -5.0]), np.array([8.0, 20.0, 10.0])
    for ours, theirs in zip(
        skymaps.parameters_to_moments(mu, sigma), distance.parameters_to_moments(mu, sigma), strict=True
    ):
        assert ours == pytest.approx(theirs, rel=1e-10)
    table, _ = moc
    ours_map = read_sky_map(io.BytesIO(gw170817_skymap()), moc=True)
    assert len(ours_map) == len(table)
    flat_map = read_sky_map(str(FLAT_SKYMAP), moc=True)
    at2017gfo = SkyCoord(RA * u.deg, DEC * u.deg, 40 * u.Mpc)
    got = crossmatch(ours_map, at2017gfo, contours=(0.5, 0.9))
    expected = crossmatch(flat_map, at2017gfo, contours=(0.5, 0.9))
    assert got.searched_prob == pytest.approx(expected.searched_prob, abs=1e-6)
    assert got.searched_area == pytest.approx(expected.searched_area, rel=1e-3)
    assert got.contour_areas == pytest.approx(expected.contour_areas, rel=1e-3)
    assert got.searched_prob_dist == pytest.approx(expected.searched_prob_dist, abs=1e-3)


# --- LVK notice ---------------------------------------------------------------------------------


def test_notice_validates_and_round_trips_through_avro_and_hop():
    from hop.models import AvroBlob

    notice = build_notice(gw170817_skymap())
    validate_notice(notice)
    data = notice_to_avro(notice)
    assert notice_from_avro(data) == notice
    # as hop writes and reads it
    blob = AvroBlob(notice, schema=igwn_alert_schema())
    encoded = blob.serialize()
    assert encoded["format"] == "avro"
    decoded = AvroBlob.deserialize(encoded["content"])
    content = decoded.content[0] if isinstance(decoded.content, list) else decoded.content
    assert content == notice
    assert decoded.schema["name"] == "igwn.alerts.Alert"
    # the record reads back with the installed schema as reader schema (as the LVK parser does)
    records = list(fastavro.reader(io.BytesIO(encoded["content"]), reader_schema=igwn_alert_schema()))
    assert records == [notice]


def test_notice_carries_the_published_facts_and_the_replay_marking():
    notice = build_notice(gw170817_skymap())
    assert notice["superevent_id"] == "MS170817a" and notice["superevent_id"].startswith("M")
    assert notice["alert_type"] == "PRELIMINARY"
    assert notice["time_created"] == "2017-08-17T13:11:04Z"
    event = notice["event"]
    assert event["time"] == "2017-08-17T12:41:04.444Z"
    assert event["instruments"] == ["H1", "L1", "V1"]
    assert event["far"] == pytest.approx(1 / (8e4 * 365.25 * 86400))
    assert event["significant"] is True
    assert max(event["classification"], key=event["classification"].get) == "BNS"
    _, header = skymaps.read_multiorder_fits(event["skymap"])
    assert header["OBJECT"] == "MS170817a"
    retraction = build_notice(None, "RETRACTION", "2017-08-17T14:00:00Z")
    validate_notice(retraction)
    assert retraction["event"] is None


def test_the_projects_lvk_parser_takes_the_notices_as_mock_events():
    """tom_mma's LVK parser (the TOM side) reads the replayed notices as it reads LVK's."""
    from hop.models import AvroBlob

    from tom_mma.gw.notices import notice_from_message

    gw = [m for m in replay_messages() if m.stream == "gw"]
    parsed = [notice_from_message(AvroBlob.deserialize(m.model().serialize()["content"]), "avro") for m in gw]
    assert [(n.superevent_id, n.alert_type, n.kind) for n in parsed] == [
        ("MS170817a", "PRELIMINARY", "mock"),
        ("MS170817a", "INITIAL", "mock"),
    ]
    skymap = parsed[0].skymap
    assert skymap.n_pixels == 4143
    assert skymap.most_probable_position == pytest.approx((194.414, -18.210), abs=1e-3)
    assert skymap.marginal_distance == pytest.approx((39.77, 8.31), abs=0.01)


def test_notice_has_the_shape_of_the_lvk_sample():
    sample_path = Path(__file__).parent / "data" / "lvk" / "MS181101ab-preliminary.avro"
    if not sample_path.exists():
        pytest.skip("the LVK sample notice is not in tests/data/lvk")
    (sample,) = fastavro.reader(io.BytesIO(sample_path.read_bytes()))
    ours = build_notice(gw170817_skymap())
    assert set(ours) == set(sample)
    assert set(sample["event"]) <= set(ours["event"])
    for key, value in sample["event"].items():
        assert type(ours["event"][key]) is type(value), key
    _, sample_header = skymaps.read_multiorder_fits(sample["event"]["skymap"])
    _, header = skymaps.read_multiorder_fits(ours["event"]["skymap"])
    assert set(sample_header) <= set(header)


def test_invalid_notice_is_rejected():
    notice = build_notice(None)
    notice["event"]["far"] = "tiny"
    with pytest.raises(ValueError, match="igwn.alerts"):
        validate_notice(notice)
    with pytest.raises(ValueError, match="alert_type"):
        build_notice(None, "FINAL")


# --- photometry schema --------------------------------------------------------------------------


def _point() -> PhotometryMessage:
    return load_photometry()[0]


def test_photometry_point_round_trips():
    point = _point()
    assert PhotometryMessage.from_dict(point.to_dict()) == point
    assert PhotometryMessage.from_json(point.to_json()) == point
    data = point.to_dict()
    assert data["schema"] == SCHEMA_ID == "tom-mma/photometry/v1"
    assert data["object_name"] == "AT2017gfo"
    assert data["aliases"][:2] == ["SSS17a", "DLT17ck"]
    assert (data["ra"], data["dec"]) == (RA, DEC)
    # unknown keys are ignored, defaults apply to optional ones
    minimal = {k: data[k] for k in ("schema", "point_id", "object_name", "ra", "dec", "mjd", "time")}
    minimal.update(band="r", magnitude=18.0, source="x", extra=1)
    parsed = PhotometryMessage.from_dict(minimal)
    assert parsed.system == "AB" and parsed.upper_limit is False and parsed.aliases == ()


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"schema": "tom-mma/photometry/v2"}, "schema must be"),
        ({"mjd": True}, "mjd must be a number"),
        ({"magnitude": float("nan")}, "magnitude must be finite"),
        ({"magnitude_error": -0.1}, "magnitude_error must not be negative"),
        ({"system": "ST"}, "system must be one of AB, Vega"),
        ({"upper_limit": "yes"}, "upper_limit must be true or false"),
        ({"ra": 360.0}, r"ra must be in \[0, 360\)"),
        ({"time": "2017-08-18T00:04:24"}, "time must be an ISO 8601 UTC time"),
        ({"time": "2017-08-19T00:04:24Z"}, "time 2017-08-19T00:04:24Z and mjd .* disagree"),
        ({"aliases": "SSS17a"}, "aliases must be a list"),
        ({"band": " "}, "band must not be empty"),
    ],
)
def test_photometry_point_rejects_bad_input(change, reason):
    with pytest.raises(ValueError, match=f"photometry point: {reason}"):
        PhotometryMessage.from_dict({**_point().to_dict(), **change})


def test_photometry_point_rejects_missing_fields_and_bad_json():
    data = _point().to_dict()
    del data["source"]
    with pytest.raises(ValueError, match="missing field 'source'"):
        PhotometryMessage.from_dict(data)
    with pytest.raises(ValueError, match="not valid JSON"):
        PhotometryMessage.from_json(b"{")
    with pytest.raises(ValueError, match="must be a JSON object"):
        PhotometryMessage.from_dict([])


def test_json_schema_file_matches_the_dataclass():
    schema = json.loads(SCHEMA_FILE.read_text())
    assert schema["$id"] == SCHEMA_ID
    assert set(schema["properties"]) == set(_point().to_dict())
    required = {"schema", "point_id", "object_name", "ra", "dec", "mjd", "time", "band", "magnitude", "source"}
    assert set(schema["required"]) == required
    # every field the dataclass requires is required by the JSON Schema, and no more
    for key in required:
        data = _point().to_dict()
        del data[key]
        with pytest.raises(ValueError, match=f"missing field '{key}'"):
            PhotometryMessage.from_dict(data)


def test_messages_validate_against_the_json_schema():
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text()))
    for point in load_photometry(PhotometrySelection(sources=None, bands=None, instruments=None, upper_limits=True)):
        validator.validate(json.loads(point.to_json()))
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({**_point().to_dict(), "system": "ST"})


# --- photometry selection -----------------------------------------------------------------------


def test_demo_photometry_is_the_decam_gri_points():
    points = load_photometry()
    assert len(points) == 25
    assert {p.instrument for p in points} == {"DECam"}
    assert {p.band for p in points} == {"g", "r", "i"}
    assert {p.source for p in points} == {"2017ApJ...848L..17C"}
    assert all(p.gw_event == MOCK_SUPEREVENT_ID and not p.upper_limit for p in points)
    assert [p.mjd for p in points] == sorted(p.mjd for p in points)
    assert points[0].time == "2017-08-18T00:04:24.340Z"


def test_all_photometry_is_optical_nir_detections_after_the_merger():
    points = load_photometry(ALL_SELECTION)
    assert len(points) == 628
    assert {p.band for p in points} <= OPTICAL_NIR_BANDS
    assert not any(p.upper_limit for p in points)
    assert min(p.mjd for p in points) > MERGER_MJD
    assert len({p.point_id for p in points}) == len(points)
    assert {p.system for p in points} == {"AB", "Vega"}
    with_limits = load_photometry(PhotometrySelection(sources=None, bands=None, instruments=None, upper_limits=True))
    limits = [p for p in with_limits if p.upper_limit]
    assert len(with_limits) == len(points) + len(limits) and limits
    assert all(p.magnitude_error is None for p in limits)


def test_unknown_source_is_refused():
    with pytest.raises(ValueError, match="unknown photometry source"):
        load_photometry(PhotometrySelection(sources=("nosuchpaper",)))


def test_aliases_come_from_the_records():
    assert object_aliases() == ("SSS17a", "DLT17ck", "PS17egl")


# --- replay ---------------------------------------------------------------------------------------


def test_replay_messages_are_in_time_order_notices_first():
    messages = replay_messages()
    assert len(messages) == 27
    assert [m.stream for m in messages[:2]] == ["gw", "gw"]
    assert [m.content["alert_type"] for m in messages[:2]] == ["PRELIMINARY", "INITIAL"]
    assert messages[0].mjd == pytest.approx(MERGER_MJD + 30 / 1440)
    assert all(m.stream == "photometry" for m in messages[2:])
    assert [m.mjd for m in messages] == sorted(m.mjd for m in messages)
    for message in messages:
        headers = dict(message.headers)
        assert headers["x-tom-mma-replay"] == b"GW170817"
        if message.stream == "gw":
            assert headers["x-tom-mma-schema"] == b"igwn.alerts.Alert" and message.key == "MS170817a"
        else:
            assert headers["x-tom-mma-schema"] == b"tom-mma/photometry/v1"
            assert message.key == message.content["point_id"]


def test_point_ids_are_stable_across_runs():
    expected = [p["point_id"] for p in json.loads((DATA / "demo-point-ids.json").read_text())["points"]]
    first = [m.key for m in replay_messages() if m.stream == "photometry"]
    second = [m.key for m in replay_messages() if m.stream == "photometry"]
    assert first == second == expected
    assert [m.content for m in replay_messages()] == [m.content for m in replay_messages()]


def test_replay_paces_by_event_time():
    messages = replay_messages()
    now = [0.0]
    slept = []

    def sleep(seconds):
        slept.append(seconds)
        now[0] += seconds

    sent = []
    assert replay(messages, sent.append, speed=DEFAULT_SPEED, sleep=sleep, clock=lambda: now[0]) == 27
    assert sent == messages
    span_days = messages[-1].mjd - messages[0].mjd
    assert sum(slept) == pytest.approx(span_days * 3.0)  # a day in 3 s
    assert DEFAULT_SPEED == 28800
    slept.clear()
    replay(messages, sent.append, speed=0, sleep=sleep, clock=lambda: now[0])
    assert slept == []
    with pytest.raises(ValueError):
        replay(messages, sent.append, speed=-1)


def test_progress_lines_when_not_a_terminal():
    messages = replay_messages()
    out = io.StringIO()
    with ReplayProgress(len(messages), out) as progress:
        for message in messages:
            progress.update(message)
    lines = out.getvalue().splitlines()
    assert 5 <= len(lines) <= 15
    assert lines[-1].startswith("GW170817 replay: 27/27 messages, event time 2017-08-28T00:00:01Z")
    bar = io.StringIO()
    with ReplayProgress(len(messages), bar, tty=True) as progress:
        for message in messages:
            progress.update(message)
    assert "27/27" in bar.getvalue() and "\r" in bar.getvalue()
    silent = io.StringIO()
    with ReplayProgress(len(messages), silent, enabled=False) as progress:
        progress.update(messages[0])
    assert silent.getvalue() == ""


# --- the command ----------------------------------------------------------------------------------


def _dry_run(*args: str) -> list[dict]:
    out, err = io.StringIO(), io.StringIO()
    call_command("replaygw170817", "--dry-run", "--speed", "0", *args, stdout=out, stderr=err)
    assert "dry run:" in err.getvalue()
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_command_dry_run_prints_json_lines():
    records = _dry_run("--no-progress")
    assert len(records) == 27
    assert [r["topic"] for r in records[:3]] == [DEFAULT_GW_TOPIC, DEFAULT_GW_TOPIC, DEFAULT_PHOTOMETRY_TOPIC]
    notice = records[0]
    assert notice["format"] == "avro" and notice["key"] == "MS170817a"
    assert notice["headers"] == {"x-tom-mma-replay": "GW170817", "x-tom-mma-schema": "igwn.alerts.Alert"}
    import base64

    assert base64.b64decode(notice["value"]["event"]["skymap"]) == gw170817_skymap()
    point = PhotometryMessage.from_dict(records[2]["value"])
    assert point.point_id == records[2]["key"]


def test_command_selections():
    assert len(_dry_run("--no-progress", "--all-photometry")) == 2 + 628
    arcavi = _dry_run("--no-progress", "--sources", "arcavi", "--bands", "g", "r")
    assert {r["value"]["band"] for r in arcavi[2:]} == {"g", "r"}
    assert {r["value"]["telescope"] for r in arcavi[2:]} == {"LCO 1m"}
    with pytest.raises(CommandError, match="unknown photometry source"):
        _dry_run("--sources", "nosuchpaper")
    with pytest.raises(CommandError, match="exclude each other"):
        _dry_run("--sources", "arcavi", "--all-photometry")
    with pytest.raises(CommandError, match="speed"):
        _dry_run("--speed", "-2")


def test_command_fails_fast_without_a_broker(tmp_path, settings):
    from tom_mma_broker.embedded import free_port

    with pytest.raises(CommandError, match="cannot reach the Kafka broker"):
        call_command("replaygw170817", "--url", f"kafka://127.0.0.1:{free_port()}", "--no-progress")
    # an embedded broker whose state directory holds none running (the session's broker may be up elsewhere)
    settings.TOM_MMA_BROKER = {**settings.TOM_MMA_BROKER, "EMBEDDED_STATE_DIR": str(tmp_path / "kafka")}
    with pytest.raises(CommandError, match="not running"):
        call_command("replaygw170817", "--url", "embedded", "--no-progress")
    with pytest.raises(CommandError, match="not a kafka:// URL"):
        call_command("replaygw170817", "--url", "http://example.org", "--no-progress")


# --- through the real broker ----------------------------------------------------------------------


@pytest.fixture
def broker(tmp_path):
    from tom_mma_broker.embedded import EmbeddedKafka

    embedded = EmbeddedKafka(tmp_path / "kafka")
    info = embedded.start(topics=[DEFAULT_GW_TOPIC, DEFAULT_PHOTOMETRY_TOPIC])
    yield info
    embedded.stop()


def _read_all(url: str, topic: str):
    from hop import Stream
    from hop.io import StartPosition

    stream = Stream(auth=False, start_at=StartPosition.EARLIEST, until_eos=True)
    with stream.open(f"{url}/{topic}", "r") as consumer:
        return list(consumer.read(metadata=True))


@pytest.mark.kafka
def test_replay_through_the_embedded_broker(broker):
    out = io.StringIO()
    call_command("replaygw170817", "--speed", "0", "--url", broker.url, stdout=out, stderr=io.StringIO())
    assert "27 messages: 2 LVK notices" in out.getvalue()
    expected = replay_messages()

    notices = _read_all(broker.url, DEFAULT_GW_TOPIC)
    points = _read_all(broker.url, DEFAULT_PHOTOMETRY_TOPIC)
    assert (len(notices), len(points)) == (2, 25)
    for (model, metadata), message in zip(notices + points, expected, strict=True):
        headers = dict(metadata.headers)
        uuid.UUID(bytes=headers["_id"])
        assert headers["x-tom-mma-replay"] == b"GW170817"
        assert headers["x-tom-mma-schema"] == message.headers[1][1]
        assert metadata.key.decode() == message.key
        if message.stream == "gw":
            assert headers["_format"] == b"avro"
            content = model.content[0] if isinstance(model.content, list) else model.content
            assert content == message.content
            validate_notice(content)
        else:
            assert headers["_format"] == b"json"
            assert PhotometryMessage.from_dict(model.content) == PhotometryMessage.from_dict(message.content)
    assert [n[0].content["alert_type"] for n in notices] == ["PRELIMINARY", "INITIAL"]
    mjds = [PhotometryMessage.from_dict(m.content).mjd for m, _ in points]
    assert mjds == sorted(mjds)
