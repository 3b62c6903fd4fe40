"""Decoders and the one normaliser of optical alerts, on the real samples (no database)."""

from __future__ import annotations

import gzip
import io
import math

import fastavro
import pytest

from tests import optical_samples as s
from tom_mma.optical import packets
from tom_mma.optical.alerts import FORCED_SNR, normalise
from tom_mma.optical.packets import AlertFormatError


def test_ztf_3x_packet_detections_limits_and_cutouts():
    (record,), _ = s.records(s.ZTF_33)
    alert = normalise(packets.read_container(s.ZTF_33.read_bytes())[0][0])
    assert (alert.survey, alert.name, alert.alert_id) == ("ZTF", record["objectId"], str(record["candid"]))
    assert alert.schema_version.startswith("3.")
    history = [record["candidate"], *record["prv_candidates"]]
    detections = [r for r in history if r["magpsf"] is not None]
    limits = [r for r in history if r["magpsf"] is None and r["diffmaglim"] is not None]
    assert len(alert.detections) == len(detections)
    assert sorted(p.limit for p in alert.points if p.is_limit) == sorted(r["diffmaglim"] for r in limits)
    assert {p.band for p in alert.points} <= {"ztfg", "ztfr", "ztfi"} and {p.system for p in alert.points} == {"AB"}
    assert [c.kind for c in alert.cutouts] == ["science", "template", "difference"]
    assert alert.cutouts[0].data == record["cutoutScience"]["stampData"]
    assert alert.broker == "" and alert.scores == ()


def test_ztf_4x_packet_from_the_402_schema_with_forced_photometry():
    rows = s.forced_rows(2458226.7, [(500.0, 20.0), (30.0, 20.0), (-99999.0, 20.0)])
    alert = normalise(packets.read_container(s.ztf4_packet(s.ztf4_record(fp_hists=rows)))[0][0])
    assert alert.schema_version == "4.02"
    forced = [p for p in alert.points if p.kind == "forced"]
    assert len(forced) == 2  # -99999 is "no measurement"
    bright, faint = forced
    assert bright.magnitude == pytest.approx(26.0 - 2.5 * math.log10(500.0))
    assert faint.is_limit and faint.limit == pytest.approx(26.0 - 2.5 * math.log10(FORCED_SNR * 20.0))


def test_fink_ztf_alert_keeps_scores_and_crossmatches():
    (record,), _ = s.records(s.FINK_ZTF)
    alert = normalise(record)
    assert alert.broker == "Fink" and alert.name == record["objectId"]
    assert dict(alert.crossmatches)["cdsxmatch"] == record["cdsxmatch"]


def test_fink_livestream_wire_format_schema_as_key():
    (record,), schema = s.records(s.FINK_ZTF)
    value, key = s.fink_message(record, schema)
    decoded = packets.decode_fink_message(value, key)
    assert decoded["objectId"] == record["objectId"] and decoded["candid"] == record["candid"]
    assert packets.decode_payload(value, key=key)[0]["candid"] == record["candid"]
    with pytest.raises(AlertFormatError, match="truncated|does not match"):
        packets.decode_fink_message(value[: len(value) // 2], key)
    with pytest.raises(AlertFormatError, match="without a key"):
        packets.decode_fink_message(value, None)
    with pytest.raises(AlertFormatError, match="not an Avro schema"):
        packets.decode_fink_message(value, b"{not json")


def test_fink_data_transfer_file_many_rubin_alerts():
    raw, _ = s.records(s.FINK_LSST)
    alerts = [normalise(r) for r in packets.read_alert_file(s.FINK_LSST)]
    assert len(alerts) == len(raw) == 3
    for alert, record in zip(alerts, raw, strict=True):
        dia_object_id = (record["diaObject"] or {}).get("diaObjectId")
        if dia_object_id:
            assert alert.name == f"LSST-{dia_object_id}" and alert.object_id == str(dia_object_id)
        else:  # a solar-system object: named by its MPC designation
            assert alert.name == f"LSST-SSO-{record['mpc_orbits']['designation']}"
        assert alert.survey == "LSST"
        assert alert.broker == "Fink"
        assert dict(alert.scores)["cats_score"] == pytest.approx(record["clf"]["cats_score"])
        n_sources = 1 + len(record["prvDiaSources"] or []) + len(record["prvDiaForcedSources"] or [])
        assert len(alert.points) == n_sources  # every measurement: a detection or a limit
        assert {c.kind for c in alert.cutouts} == {"science", "template", "difference"}


def test_rubin_flux_to_ab_magnitude_and_tai_to_utc():
    record = s.records(s.FINK_LSST)[0][0]
    source = record["diaSource"]
    alert = normalise(record)
    first = alert.points[0]
    assert first.kind == "detection" and first.band == f"lsst{source['band']}"
    assert first.magnitude == pytest.approx(31.4 - 2.5 * math.log10(source["psfFlux"]))
    assert (source["midpointMjdTai"] - first.mjd) * 86400 == pytest.approx(37.0)


@pytest.mark.parametrize("version", ["10.0", "11.0", "11.1"])
def test_rubin_schemas_plain_avro_and_confluent_frames(version):
    (record,), _ = s.records(s.rubin_sample(version))
    name = f"lsst.v{version.replace('.', '_')}"
    assert name in packets.rubin_schema_ids().values()
    from_file = normalise(packets.read_alert_file(s.rubin_sample(version))[0])
    frame = s.confluent_frame(record, name)
    decoded, decoded_version = packets.decode_confluent_frame(frame)
    assert decoded_version == name and normalise(decoded) == from_file
    # schemaless with the known schema
    body = frame[5:]
    assert packets.decode_payload(body, rubin_version=name)[0]["diaSourceId"] == record["diaSourceId"]


def test_rubin_bad_frames_are_clear_permanent_errors():
    (record,), _ = s.records(s.rubin_sample("11.0"))
    frame = s.confluent_frame(record, "lsst.v11_0")
    with pytest.raises(AlertFormatError, match="unknown Rubin schema id 4242") as info:
        packets.decode_confluent_frame(frame[:1] + (4242).to_bytes(4, "big") + frame[5:])
    assert info.value.permanent
    with pytest.raises(AlertFormatError, match="truncated Confluent frame"):
        packets.decode_confluent_frame(frame[:3])
    with pytest.raises(AlertFormatError, match="truncated|does not match"):
        packets.decode_confluent_frame(frame[: len(frame) - 40])
    # written with v11.0, read as v10.0: a schema mismatch
    with pytest.raises(AlertFormatError):
        packets.decode_confluent_frame(frame[:1] + (1000).to_bytes(4, "big") + frame[5:] + b"\x00" * 3)


def test_corrupt_and_truncated_inputs():
    payload = s.ZTF_33.read_bytes()
    with pytest.raises(AlertFormatError, match="corrupt or truncated"):
        packets.read_container(payload[: len(payload) // 2])
    (record,), schema = s.records(s.ZTF_33)
    record["cutoutScience"]["stampData"] = b"\x1f\x8bnot really gzip"
    with pytest.raises(AlertFormatError, match="corrupt science cutout"):
        normalise(record)
    with pytest.raises(AlertFormatError, match="neither a ZTF alert"):
        normalise({"something": 1})


def test_gzipped_files_and_folders(tmp_path):
    (tmp_path / "a.avro.gz").write_bytes(gzip.compress(s.ZTF_33.read_bytes()))
    (tmp_path / "b.avro").write_bytes(s.FINK_ZTF.read_bytes())
    (tmp_path / "notes.txt").write_text("not an alert")
    found = list(packets.iter_records([tmp_path]))
    assert [p.name for p, _ in found] == ["a.avro.gz", "b.avro"]
    with pytest.raises(AlertFormatError, match="corrupt gzip"):
        packets.read_container(gzip.compress(s.ZTF_33.read_bytes())[:-30])


def test_container_split_into_one_message_per_alert():
    from tom_mma_broker.containers import split_container

    parts = split_container(s.FINK_LSST.read_bytes())
    raw, _ = s.records(s.FINK_LSST)
    assert len(parts) == 3
    for part, record in zip(parts, raw, strict=True):
        (one,) = list(fastavro.reader(io.BytesIO(part)))
        assert one["diaSourceId"] == record["diaSourceId"]
    assert split_container(s.ZTF_33.read_bytes()) == [s.ZTF_33.read_bytes()]
