"""The LVK notice parser on the real MS181101ab notices, both transports (no database)."""

from __future__ import annotations

import copy
import datetime as dt
import json

import numpy as np
import pytest
from confluent_kafka import Message
from hop.models import AvroBlob, Blob, JSONBlob

from tests.lvk_samples import DATA, SEQUENCE, avro_record, burst_record, json_form
from tom_mma.gw.notices import (
    AlertType,
    EventKind,
    GWNotice,
    NoticeError,
    notice_from_message,
    parse_avro,
    parse_json,
)


@pytest.fixture(scope="module")
def notices() -> dict[str, GWNotice]:
    return {
        name: notice_from_message(AvroBlob.load_file(DATA / f"MS181101ab-{name}.avro"), "avro") for name in SEQUENCE
    }


def test_preliminary_fields(notices):
    n = notices["preliminary"]
    assert n.superevent_id == "MS181101ab"
    assert n.kind is EventKind.MOCK
    assert n.alert_type is AlertType.PRELIMINARY
    assert n.time_created == dt.datetime(2018, 11, 1, 22, 34, 49, tzinfo=dt.UTC)
    assert n.event_time == dt.datetime(2018, 11, 1, 22, 22, 46, 654000, tzinfo=dt.UTC)
    assert n.far == 9.11069936486e-14
    assert n.significant is True
    assert (n.group, n.pipeline, n.search) == ("CBC", "gstlal", "MDC")
    assert n.instruments == ("H1", "L1", "V1")
    assert dict(n.classification) == {"BNS": 0.95, "NSBH": 0.01, "BBH": 0.03, "Terrestrial": 0.01}
    assert dict(n.properties) == {"HasNS": 0.95, "HasRemnant": 0.91, "HasMassGap": 0.01}
    assert n.duration is None and n.central_frequency is None
    assert n.urls["gracedb"] == "https://example.org/superevents/MS181101ab/view/"
    assert n.external_coinc is None
    summary = n.skymap.summary()
    assert (summary.ra, summary.dec) == (194.30419921874997, -17.856895095545468)
    assert (summary.distance_mean, summary.distance_std) == (39.76999609489013, 8.308435058808886)


def test_the_sequence(notices):
    types = [notices[name].alert_type for name in SEQUENCE]
    assert types == [
        AlertType.EARLYWARNING,
        AlertType.PRELIMINARY,
        AlertType.INITIAL,
        AlertType.UPDATE,
        AlertType.UPDATE,
        AlertType.RETRACTION,
    ]
    ordered = sorted(notices.values(), key=lambda n: n.sort_key)
    assert [n.alert_type for n in ordered] == types[:3] + [AlertType.UPDATE, AlertType.UPDATE] + types[5:]
    assert len({n.digest for n in notices.values()}) == 6
    retraction = notices["retraction"]
    assert retraction.is_retraction and retraction.skymap is None and retraction.far is None
    coinc = notices["ext-update"].external_coinc
    assert (coinc.observatory, coinc.search, coinc.gcn_notice_id) == ("Fermi", "GRB", 524666471)
    assert coinc.time_difference == 2.02
    assert coinc.time_sky_position_coincidence_far == 6.410749524018777e-16
    combined = coinc.combined_skymap.summary()
    assert combined.area_90 < notices["update"].skymap.summary().area_90  # the GRB narrows the region
    assert coinc.combined_skymap.sha256 != notices["update"].skymap.sha256
    assert notices["ext-update"].skymap.sha256 == notices["update"].skymap.sha256


def test_both_shapes_of_avroblob_content(notices):
    record = avro_record("initial")
    as_dict = notice_from_message(AvroBlob(content=record), "avro")  # hop >= 0.11
    as_list = notice_from_message(AvroBlob(content=[record], single_record=False), "avro")  # hop < 0.11
    assert as_dict == as_list == notices["initial"]
    assert as_dict.digest == as_list.digest == notices["initial"].digest
    with pytest.raises(NoticeError, match="one record"):
        parse_avro([record, record])


def test_raw_avro_bytes_without_hop_headers(notices):
    raw = (DATA / "MS181101ab-update.avro").read_bytes()
    assert notice_from_message(Blob(content=raw), "avro").digest == notices["update"].digest
    with pytest.raises(NoticeError, match="not an Avro container"):
        notice_from_message(Blob(content=raw[:1000]), "avro")


@pytest.mark.parametrize("name", ["preliminary", "retraction"])
def test_real_json_samples_equal_their_avro_twins(notices, name):
    text = (DATA / f"MS181101ab-{name}.json").read_bytes()
    for message in (JSONBlob.load(text), text, text.decode()):
        parsed = notice_from_message(message, "json")
        assert parsed.transport == "json"
        assert parsed == notices[name]
        assert parsed.digest == notices[name].digest


def test_derived_json_forms_of_the_others(notices):
    for name in ["earlywarning", "initial", "update", "ext-update"]:
        parsed = parse_json(json.loads(json.dumps(json_form(avro_record(name)))))
        assert parsed.digest == notices[name].digest
    ext = parse_json(json_form(avro_record("ext-update")))
    assert ext.external_coinc.combined_skymap.sha256 == notices["ext-update"].external_coinc.combined_skymap.sha256


def test_confluent_kafka_message_of_the_gcn_stream(notices):
    # tom-alertstreams' GCNClassicAlertStream hands the handler the raw confluent_kafka.Message: the payload is
    # .value() (bytes), there is no .content. confluent-kafka >= 2.x lets a Message be built directly: this is
    # the real class, with the real JSON sample as its value (the path through a broker is in test_gw_stream).
    text = (DATA / "MS181101ab-preliminary.json").read_bytes()
    message = Message(topic="gcn.notices.igwn.gwalert", value=text)
    parsed = notice_from_message(message, "json")
    assert parsed == notices["preliminary"] and parsed.transport == "json"
    assert notice_from_message(Message(topic="t", value=text.decode()), "json").digest == parsed.digest
    # Avro container bytes as a Message value (a GCN-style stream of the Avro form)
    raw = (DATA / "MS181101ab-update.avro").read_bytes()
    assert notice_from_message(Message(topic="t", value=raw), "avro").digest == notices["update"].digest
    with pytest.raises(NoticeError, match="empty Kafka message"):
        notice_from_message(Message(topic="t", value=None), "json")
    with pytest.raises(NoticeError, match="not a JSON document"):
        notice_from_message(Message(topic="t", value=text[:1000]), "json")


def test_notice_errors_are_permanent():
    # the reliable stream quarantines an exception whose ``permanent`` is truthy at once, without retrying:
    # a notice that fails to parse fails the same way every time
    with pytest.raises(NoticeError) as info:
        parse_json(b'{"alert_type": ')
    assert info.value.permanent is True
    assert NoticeError.permanent is True


def test_burst_notice():
    record = burst_record()
    n = parse_avro(record)
    assert n.kind is EventKind.REAL
    assert (n.group, n.duration, n.central_frequency) == ("Burst", 0.0125, 240.5)
    assert dict(n.classification) == {}
    summary = n.skymap.summary()
    assert summary.distance_mean is None and summary.distance_std is None
    assert not n.skymap.has_distance


# -- bad input: every case raises NoticeError with a reason ---------------------------------------------------
def _cut_base64(doc: dict) -> dict:
    doc = copy.deepcopy(doc)
    doc["event"]["skymap"] = doc["event"]["skymap"][:-3]
    return doc


def _cut_base64_on_a_block(doc: dict) -> dict:
    doc = copy.deepcopy(doc)
    doc["event"]["skymap"] = doc["event"]["skymap"][: 4 * 50_000]
    return doc


@pytest.mark.parametrize(
    "mangle, reason",
    [
        (_cut_base64, "base64"),
        (_cut_base64_on_a_block, "truncated"),
        (lambda d: {**d, "alert_type": "SIGNIFICANT"}, "unknown alert type 'SIGNIFICANT'"),
        (lambda d: {**d, "event": {**d["event"], "far": "tiny"}}, "schema.*far"),
        (lambda d: {**d, "event": {k: v for k, v in d["event"].items() if k != "group"}}, "schema.*group"),
        (lambda d: {**d, "time_created": 12}, "schema.*time_created"),
        (lambda d: {**d, "time_created": "yesterday"}, "ISO 8601"),
        (lambda d: {**d, "superevent_id": "GW170817"}, "superevent id"),
        (lambda d: {**d, "event": None}, "without an event"),
        (lambda d: {**d, "event": {**d["event"], "skymap": 42}}, "base64 string"),
        (lambda d: [d], "object"),
    ],
)
def test_bad_json_notices(mangle, reason):
    good = json.loads((DATA / "MS181101ab-preliminary.json").read_text())
    with pytest.raises(NoticeError, match=reason) as info:
        parse_json(mangle(good))
    assert len(str(info.value)) <= 400  # a readable reason, not a megabyte of FITS


def test_bad_avro_notices():
    record = avro_record("preliminary")
    corrupt = dict(record, event=dict(record["event"], skymap=record["event"]["skymap"][:300_000]))
    with pytest.raises(NoticeError, match="event.skymap: truncated"):
        parse_avro(corrupt)
    garbage = dict(record, event=dict(record["event"], skymap=b"\x00" * 4000))
    with pytest.raises(NoticeError, match="event.skymap: not a FITS file"):
        parse_avro(garbage)
    bad_map = np.frombuffer(record["event"]["skymap"], dtype=np.uint8).copy()
    bad_map[-1000:] = 0xFF  # NaN densities at the end of the table
    with pytest.raises(NoticeError, match="event.skymap"):
        parse_avro(dict(record, event=dict(record["event"], skymap=bad_map.tobytes())))
    ext = avro_record("ext-update")
    cut = dict(ext, external_coinc=dict(ext["external_coinc"], combined_skymap=b"SIMPLE  =" + b" " * 3000))
    with pytest.raises(NoticeError, match="external_coinc.combined_skymap"):
        parse_avro(cut)
    with pytest.raises(NoticeError, match="a notice is a record"):
        parse_avro("PRELIMINARY")
    with pytest.raises(NoticeError, match="not a JSON document"):
        parse_json(b'{"alert_type": ')
