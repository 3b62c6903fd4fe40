"""One optical alert grows one Target: real ZTF, Rubin and Fink alerts through the handlers and replayalerts."""

from __future__ import annotations

import copy
import gzip
import io
from pathlib import Path

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from guardian.shortcuts import get_perms
from hop.io import Metadata
from hop.models import AvroBlob, Blob
from tom_dataproducts.models import DataProduct, PhotometryReducedDatum, ReducedDatum
from tom_targets.models import Target, TargetExtra

from tests import optical_samples as s
from tom_mma import signals
from tom_mma.handlers import optical as handlers
from tom_mma.optical.alerts import normalise
from tom_mma.optical.packets import AlertFormatError
from tom_mma.optical.service import FINK_HISTORY_TYPE
from tom_mma_broker.models import ArchivedAlert, QuarantinedAlert

pytestmark = pytest.mark.django_db

DEMO_HANDLERS = {
    "tom-mma.demo.fink-ztf": "tom_mma.handlers.optical.fink_ztf_handler",
    "tom-mma.demo.fink-lsst": "tom_mma.handlers.optical.fink_lsst_handler",
    "tom-mma.demo.ztf": "tom_mma.handlers.optical.ztf_handler",
    "tom-mma.demo.lsst": "tom_mma.handlers.optical.lsst_handler",
}


@pytest.fixture(autouse=True)
def optical_settings(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.TOM_MMA = {}
    settings.ALERT_STREAMS = [
        {
            "ACTIVE": True,
            "NAME": "tom_mma_broker.streams.ReliableHopskotchAlertStream",
            "OPTIONS": {"URL": "embedded", "TOPIC_HANDLERS": DEMO_HANDLERS},
        }
    ]
    return settings


@pytest.fixture
def sent():
    """The optical_photometry_added signals, as (target name, number of points, gw_event)."""
    log = []

    def on_points(sender, target, alert, points, placements, gw_event, **kw):
        log.append((target.name, len(points), gw_event))

    signals.optical_photometry_added.connect(on_points)
    yield log
    signals.optical_photometry_added.disconnect(on_points)


def replay(*paths: Path | str, topic: str) -> str:
    out = io.StringIO()
    call_command("replayalerts", *map(str, paths), "--topic", topic, stdout=out)
    return out.getvalue()


def meta(topic: str, key=None) -> Metadata:
    return Metadata(topic=topic, partition=0, offset=0, timestamp=0, key=key, headers=[], _raw=None)


def later_alert(record: dict, days: float = 1.0, mag: float = 17.5) -> dict:
    """The next alert of the same object: a new candidate; the old one joins the history."""
    newer = copy.deepcopy(record)
    newer["prv_candidates"] = [*record["prv_candidates"], {**record["candidate"]}]
    newer["candid"] = record["candid"] + 1
    newer["candidate"] = {**record["candidate"], "candid": record["candid"] + 1, "magpsf": mag}
    newer["candidate"]["jd"] = record["candidate"]["jd"] + days
    for kind in ("cutoutScience", "cutoutTemplate", "cutoutDifference"):
        newer[kind] = {**record[kind], "fileName": "next_" + record[kind]["fileName"]}
    return newer


# -- replayalerts ----------------------------------------------------------------------------------
def test_fink_data_transfer_file_is_many_messages_and_a_replay_adds_nothing(sent):
    out = replay(s.FINK_LSST, topic="tom-mma.demo.fink-lsst")
    raw, _ = s.records(s.FINK_LSST)
    assert ArchivedAlert.objects.count() == len(raw) == 3, out
    assert not QuarantinedAlert.objects.exists()
    alerts = [normalise(r) for r in raw]
    assert sorted(Target.objects.values_list("name", flat=True)) == sorted(a.name for a in alerts)
    total = PhotometryReducedDatum.objects.count()
    assert total == sum(len({(p.mjd, p.band, p.magnitude, p.limit) for p in a.points}) for a in alerts)
    limits = PhotometryReducedDatum.objects.filter(brightness__isnull=True)
    assert limits.count() == sum(1 for a in alerts for p in a.points if p.is_limit)
    assert set(PhotometryReducedDatum.objects.values_list("unit", flat=True)) == {"AB mag"}
    assert DataProduct.objects.count() == 9  # three stamps of each alert
    assert ReducedDatum.objects.filter(data_type=FINK_HISTORY_TYPE).count() == 3
    before = (Target.objects.count(), total, DataProduct.objects.count(), len(sent))
    replay(s.FINK_LSST, topic="tom-mma.demo.fink-lsst")
    after = (Target.objects.count(), PhotometryReducedDatum.objects.count(), DataProduct.objects.count(), len(sent))
    assert after == before


def test_a_folder_of_ztf_packets_gzipped_and_not(tmp_path):
    folder = tmp_path / "ztf"
    folder.mkdir()
    (folder / "a.avro.gz").write_bytes(gzip.compress(s.ZTF_33.read_bytes()))
    (folder / "b.avro").write_bytes(s.ztf4_packet(s.ztf4_record(fp_hists=s.forced_rows(2458226.7, [(900.0, 30.0)]))))
    replay(folder, topic="tom-mma.demo.ztf")
    # a 3.3 and a 4.02 packet of the same object: one Target, the 4.x forced point added once
    (target,) = Target.objects.all()
    assert target.name == s.records(s.ZTF_33)[0][0]["objectId"]
    forced = PhotometryReducedDatum.objects.filter(target=target, value__kind="forced")
    assert forced.count() == 1


def test_bad_input_is_quarantined_with_its_reason_and_the_rest_is_handled(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    payload = s.ZTF_33.read_bytes()
    (folder / "1-truncated.avro").write_bytes(payload[: len(payload) // 2])
    (record,), schema = s.records(s.ZTF_33)
    broken = copy.deepcopy(record)
    broken["cutoutDifference"]["stampData"] = b"\x1f\x8b" + b"\x00" * 40
    import fastavro

    buf = io.BytesIO()
    fastavro.writer(buf, schema, [broken])
    (folder / "2-corrupt-cutout.avro").write_bytes(buf.getvalue())
    (folder / "3-rubin-on-a-ztf-topic.avro").write_bytes(s.rubin_sample("11.0").read_bytes())
    (folder / "4-good.avro").write_bytes(payload)
    replay(folder, topic="tom-mma.demo.ztf")
    reasons = sorted(QuarantinedAlert.objects.values_list("reason", flat=True))
    assert len(reasons) == 3
    assert any("corrupt difference cutout" in r for r in reasons)
    assert any("another survey" in r for r in reasons)
    assert any("Avro" in r for r in reasons)  # the truncated file, quarantined at decode
    assert all(q.attempts == 1 for q in QuarantinedAlert.objects.all())  # permanent: not retried
    assert Target.objects.get().name == record["objectId"]


# -- one object, one Target ------------------------------------------------------------------------
def test_the_same_object_twice_grows_one_target(sent, django_capture_on_commit_callbacks, optical_settings):
    (record,), _ = s.records(s.ZTF_33)
    with django_capture_on_commit_callbacks(execute=True):
        (first,) = handlers.ztf_handler(AvroBlob(content=record), meta("tom-mma.demo.ztf"))
    points = PhotometryReducedDatum.objects.count()
    assert first.created and points == first.photometry_added == len(normalise(record).points)
    old_files = set(DataProduct.objects.values_list("data", flat=True))
    assert len(old_files) == 3
    media = Path(optical_settings.MEDIA_ROOT)
    assert all((media / name).exists() for name in old_files)

    with django_capture_on_commit_callbacks(execute=True):
        (second,) = handlers.ztf_handler(AvroBlob(content=later_alert(record)), meta("tom-mma.demo.ztf"))
    assert not second.created and second.target.pk == first.target.pk
    assert second.photometry_added == 1  # only the new candidate: its history is what the Target has
    assert PhotometryReducedDatum.objects.count() == points + 1
    # OPTICAL_CUTOUTS_KEPT = 1: the newer alert's stamps replace the older ones, files too
    assert set(DataProduct.objects.values_list("product_id", flat=True)) == {
        f"optical:ZTF:{record['candid'] + 1}:{k}" for k in ("science", "template", "difference")
    }
    assert not any((media / name).exists() for name in old_files)
    assert [n for _, n, _ in sent] == [points, 1]

    # the older alert again (a redelivery by another path): nothing changes
    with django_capture_on_commit_callbacks(execute=True):
        (third,) = handlers.ztf_handler(AvroBlob(content=record), meta("tom-mma.demo.ztf"))
    assert third.photometry_added == 0 and third.cutouts_added == 0
    assert PhotometryReducedDatum.objects.count() == points + 1 and DataProduct.objects.count() == 3
    assert len(sent) == 2


def test_stamp_files_are_fits_named_by_alert_and_never_overwrite_a_file(optical_settings):
    (record,), _ = s.records(s.ZTF_33)
    media = Path(optical_settings.MEDIA_ROOT)
    # a file already where the science stamp would go: kept as it is, the stamp takes a free name beside it
    field = DataProduct._meta.get_field("data")
    taken = field.generate_filename(
        DataProduct(target=Target(name=record["objectId"])), f"ZTF_{record['candid']}_science.fits.gz"
    )
    (media / taken).parent.mkdir(parents=True)
    (media / taken).write_bytes(b"someone else's file")
    (result,) = handlers.ztf_handler(AvroBlob(content=record), meta("tom-mma.demo.ztf"))
    assert result.cutouts_added == 3
    products = {p.product_id.rsplit(":", 1)[1]: p for p in DataProduct.objects.filter(target=result.target)}
    assert (media / taken).read_bytes() == b"someone else's file"
    assert products["science"].data.name != taken and products["science"].data.name.endswith(".fits.gz")
    for kind in ("science", "template", "difference"):
        assert (media / products[kind].data.name).read_bytes() == record[f"cutout{kind.title()}"]["stampData"]
    assert products["template"].data.name == taken.replace("_science.", "_template.")


def test_rubin_alert_merges_into_a_ztf_target_by_cone():
    (ztf,), _ = s.records(s.ZTF_33)
    handlers.ztf_handler(AvroBlob(content=ztf), None)
    (rubin,), _ = s.records(s.rubin_sample("11.0"))
    rubin["diaObject"] = {
        **rubin["diaObject"],
        "ra": ztf["candidate"]["ra"],
        "dec": ztf["candidate"]["dec"] + 0.5 / 3600,
    }
    (result,) = handlers.lsst_handler(AvroBlob(content=rubin), None)
    assert not result.created and result.target.name == ztf["objectId"]
    names = set(result.target.aliases.values_list("name", flat=True))
    assert f"LSST-{rubin['diaObject']['diaObjectId']}" in names and str(rubin["diaObject"]["diaObjectId"]) in names
    # outside the cone (settings: 1.5"), another Target
    rubin["diaObject"] = {**rubin["diaObject"], "diaObjectId": 42, "dec": ztf["candidate"]["dec"] + 5 / 3600}
    (other,) = handlers.lsst_handler(AvroBlob(content=rubin), None)
    assert other.created and Target.objects.count() == 2


def test_new_targets_go_to_the_groups_the_setting_names(optical_settings):
    optical_settings.TOM_MMA = {"OPTICAL_TARGET_GROUPS": ["Fink watchers"]}
    (record,), _ = s.records(s.FINK_ZTF)
    (result,) = handlers.fink_ztf_handler(AvroBlob(content=record), None)
    group = Group.objects.get(name="Fink watchers")
    assert set(get_perms(group, result.target)) >= {"view_target", "change_target"}
    assert not Group.objects.filter(name="Public").exists()


def test_fink_scores_and_crossmatches_with_their_history():
    raw, _ = s.records(s.FINK_LSST)
    record = next(r for r in raw if (r["diaObject"] or {}).get("diaObjectId"))
    handlers.fink_lsst_handler(AvroBlob(content=record), None)
    target = Target.objects.get()
    extras = dict(TargetExtra.objects.filter(target=target).values_list("key", "value"))
    assert float(extras["fink:cats_score"]) == pytest.approx(record["clf"]["cats_score"])
    assert extras["fink:gaiadr3_DR3Name"] == record["xm"]["gaiadr3_DR3Name"]
    # a later alert of the object with another score: the extra follows, the history keeps both
    later = copy.deepcopy(record)
    later["diaSource"] = {**record["diaSource"], "diaSourceId": record["diaSource"]["diaSourceId"] + 1}
    later["diaSource"]["midpointMjdTai"] += 1.0
    later["clf"] = {**record["clf"], "cats_score": 0.25}
    handlers.fink_lsst_handler(AvroBlob(content=later), None)
    history = ReducedDatum.objects.filter(target=target, data_type=FINK_HISTORY_TYPE).order_by("timestamp")
    assert [h.value["scores"]["cats_score"] for h in history] == [pytest.approx(record["clf"]["cats_score"]), 0.25]
    assert TargetExtra.objects.get(target=target, key="fink:cats_score").float_value == 0.25
    # the older alert again: history unchanged, the latest value stays
    handlers.fink_lsst_handler(AvroBlob(content=record), None)
    assert history.count() == 2 and TargetExtra.objects.get(target=target, key="fink:cats_score").float_value == 0.25


def test_fink_livestream_bytes_with_the_schema_as_key_and_confluent_frames():
    (record,), schema = s.records(s.FINK_ZTF)
    value, key = s.fink_message(record, schema)
    (result,) = handlers.fink_ztf_handler(Blob(content=value), meta("tom-mma.demo.fink-ztf", key=key))
    assert result.target.name == record["objectId"]
    (rubin,), _ = s.records(s.rubin_sample("10.0"))
    frame = s.confluent_frame(rubin, "lsst.v10_0")
    (result,) = handlers.lsst_handler(Blob(content=frame), meta("tom-mma.demo.lsst"))
    assert result.target.name == f"LSST-{rubin['diaObject']['diaObjectId']}"
    with pytest.raises(AlertFormatError, match="unknown Rubin schema id"):
        handlers.lsst_handler(Blob(content=frame[:1] + (999).to_bytes(4, "big") + frame[5:]), None)


def test_missing_cutouts_quarantined_when_required(optical_settings):
    optical_settings.TOM_MMA = {"OPTICAL_REQUIRE_CUTOUTS": True}
    replay(s.rubin_sample("11.0"), topic="tom-mma.demo.lsst")
    assert "missing cutout(s): difference, science, template" in QuarantinedAlert.objects.get().reason
    assert not Target.objects.exists()
