"""Poison messages through the real ingest path, and the size limits that refuse decompression bombs.

The batch test sends about 1% poison among real messages (source photometry, a real ZTF packet) through
:class:`~tom_mma_broker.ingest.Ingestor` with the topics' real handlers, in batches as the stream makes them,
and checks with independent queries against the list of ids it sent: every poison message quarantined with
its reason, every good one stored once, nothing of a poison message stored.

The bomb tests measure the peak of Python's allocations (tracemalloc, which sees every ``bytes`` that zlib
returns) and assert it in bytes: a bomb that would inflate to 1 GiB is refused within the configured limit
plus a small, stated margin.
"""

from __future__ import annotations

import copy
import io
import json
import random
import tracemalloc
import uuid

import fastavro
import pytest
from django.db import connection

from tests import optical_samples
from tests.fuzzing import avro_container, avro_deflate_bomb, deflate_bomb, gzip_bomb
from tom_mma.inflate import CHUNK, DEFAULT_MAX_INFLATED_BYTES, InflateError, gunzip, inflate_raw
from tom_mma_broker.schemas.photometry import PhotometryMessage

MiB = 1024 * 1024
#: what a refused bomb may cost above the limit: the chunk being inflated and the one before it, copies of the
#: compressed input (about 1 MB here: a block read out of its file, the piece zlib holds), the interpreter's own
MARGIN = 2 * CHUNK + 3 * MiB
FITS_HEAD = b"SIMPLE  =                    T" + b" " * 50


def peak_of(call) -> tuple[object, int]:
    """(what ``call`` returned or raised, the peak of Python allocations during it in bytes)."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        try:
            outcome = call()
        except Exception as exc:  # the caller checks which
            outcome = exc
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    return outcome, peak


@pytest.fixture
def limits(settings):
    """Small limits for the tests (the defaults are exercised by the checks' tests): 8 MiB inflated, 2 MiB messages."""
    settings.TOM_MMA = {**settings.TOM_MMA, "MAX_INFLATED_BYTES": 8 * MiB}
    settings.TOM_MMA_BROKER = {**settings.TOM_MMA_BROKER, "MAX_MESSAGE_BYTES": 2 * MiB}
    return 8 * MiB


# -- the inflaters ---------------------------------------------------------------------------------------
def test_gunzip_refuses_a_bomb_within_the_limit_and_reads_every_member():
    bomb = gzip_bomb()
    outcome, peak = peak_of(lambda: gunzip(bomb, limit=8 * MiB, what="x.avro.gz"))
    assert isinstance(outcome, InflateError) and "x.avro.gz: inflates beyond 8388608 bytes" in str(outcome)
    assert outcome.permanent
    assert peak < 8 * MiB + MARGIN
    import gzip

    assert gunzip(gzip.compress(b"ab") + gzip.compress(b"cd"), limit=4) == b"abcd"
    with pytest.raises(InflateError, match="cut short"):
        gunzip(gzip.compress(b"abc" * 1000)[:-12], limit=10**6)
    with pytest.raises(InflateError, match="corrupt"):
        gunzip(b"\x1f\x8b\x08\x00" + b"\xff" * 20, limit=10**6)


def test_inflate_raw_refuses_a_bomb_within_the_limit():
    outcome, peak = peak_of(lambda: inflate_raw(deflate_bomb(), limit=4 * MiB))
    assert isinstance(outcome, InflateError) and peak < 4 * MiB + MARGIN


def test_the_default_limit_is_512_mib_and_read_from_settings(settings):
    from tom_mma.inflate import max_inflated_bytes

    assert DEFAULT_MAX_INFLATED_BYTES == 512 * MiB == max_inflated_bytes()
    settings.TOM_MMA = {**settings.TOM_MMA, "MAX_INFLATED_BYTES": 1234}
    assert max_inflated_bytes() == 1234


# -- each place that inflates ----------------------------------------------------------------------------
def test_an_avro_gz_bomb_is_refused_by_the_optical_reader(limits):
    from tom_mma.optical.packets import AlertFormatError, decode_payload

    outcome, peak = peak_of(lambda: decode_payload(gzip_bomb()))
    assert isinstance(outcome, AlertFormatError), outcome
    assert "gzip file: inflates beyond" in str(outcome) and peak < limits + MARGIN


def test_a_deflate_avro_bomb_is_refused_by_the_optical_reader_with_one_chunk_of_memory(limits):
    from tom_mma.optical.packets import AlertFormatError, read_container

    # the check before fastavro throws its output away: it needs one chunk, not the limit
    outcome, peak = peak_of(lambda: read_container(avro_deflate_bomb()))
    assert isinstance(outcome, AlertFormatError) and "Avro file: inflates beyond" in str(outcome)
    assert peak < MARGIN + 2 * MiB  # the bomb file itself is about 1 MB


def test_a_cutout_bomb_is_refused_with_one_chunk_of_memory():
    from tom_mma.optical.packets import AlertFormatError, check_cutout

    bomb = gzip_bomb(prefix=FITS_HEAD)  # a valid FITS card first: only inflating it all shows the bomb
    outcome, peak = peak_of(lambda: check_cutout(bomb, "science"))  # the default MAX_CUTOUT_BYTES, 16 MiB
    assert isinstance(outcome, AlertFormatError), outcome
    assert "science cutout: inflates beyond 16777216 bytes (TOM_MMA['MAX_CUTOUT_BYTES'])" in str(outcome)
    assert peak < MARGIN + 2 * MiB
    import gzip

    check_cutout(gzip.compress(FITS_HEAD + b" " * 20000), "science")  # a real stamp's size passes
    with pytest.raises(AlertFormatError, match="above TOM_MMA\\['MAX_CUTOUT_BYTES'\\]"):
        check_cutout(FITS_HEAD + b" " * 2000, "science", limit=1000)


def test_a_deflate_avro_bomb_is_refused_by_the_archive_decoder(limits):
    from tom_mma_broker.formats import DecodeError, decode

    outcome, peak = peak_of(lambda: decode("avro", avro_deflate_bomb()))
    assert isinstance(outcome, DecodeError) and "Avro deflate block: inflates beyond" in str(outcome)
    assert peak < limits + MARGIN


def test_the_archive_decoder_bounds_every_block_of_a_file_together(limits):
    from tom_mma_broker.formats import DecodeError, decode

    engine = __import__("zlib").compressobj(9, 8, -15)
    block = engine.compress(b"\0" * (3 * MiB)) + engine.flush()  # each block is under the limit, not the sum
    outcome, _ = peak_of(lambda: decode("avro", avro_container([(1, block)] * 4)))
    assert isinstance(outcome, DecodeError) and "inflates beyond" in str(outcome)


def test_an_xz_avro_file_is_bounded_and_snappy_refused(limits):
    import lzma

    from tom_mma_broker.formats import DecodeError, decode

    xz = lzma.compress(b"\0" * (9 * MiB))
    outcome, peak = peak_of(lambda: decode("avro", avro_container([(1, xz)], codec="xz")))
    # xz's decoder holds its dictionary (9 MiB at the default preset; refused past XZ_MEMLIMIT, 80 MiB)
    assert isinstance(outcome, DecodeError) and "inflates beyond" in str(outcome) and peak < 9 * MiB + MARGIN
    with pytest.raises(DecodeError, match="codec 'snappy' is not read"):
        decode("avro", avro_container([(1, b"x")], codec="snappy"))


def test_a_gzipped_sky_map_bomb_is_refused(limits):
    from tom_mma.gw.skymaps import SkyMapError, read_multiorder

    outcome, peak = peak_of(lambda: read_multiorder(gzip_bomb(prefix=b"SIMPLE  =")))
    assert isinstance(outcome, SkyMapError) and "gzip-compressed sky map: inflates beyond" in str(outcome)
    assert peak < limits + MARGIN


def test_an_avro_lvk_notice_bomb_is_refused(limits):
    from hop.models import Blob

    from tom_mma.gw.notices import NoticeError, notice_from_message

    outcome, peak = peak_of(lambda: notice_from_message(Blob(content=avro_deflate_bomb()), "avro"))
    assert isinstance(outcome, NoticeError) and "Avro notice: inflates beyond" in str(outcome)
    assert peak < MARGIN + 2 * MiB


def test_replayed_gzip_files_are_bounded(limits):
    from tom_mma_broker.containers import gunzip as replay_gunzip
    from tom_mma_broker.containers import split_container
    from tom_mma_broker.formats import DecodeError

    outcome, peak = peak_of(lambda: replay_gunzip(gzip_bomb()))
    assert isinstance(outcome, DecodeError) and peak < limits + MARGIN
    with pytest.raises(DecodeError, match="inflates beyond"):
        split_container(avro_deflate_bomb())


# -- the checks ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("app", "key", "check_id"),
    [
        ("TOM_MMA", "MAX_INFLATED_BYTES", "tom_mma.E120"),
        ("TOM_MMA", "MAX_CUTOUT_BYTES", "tom_mma.E121"),
        ("TOM_MMA_BROKER", "MAX_MESSAGE_BYTES", "tom_mma_broker.E030"),
    ],
)
@pytest.mark.parametrize("bad", [0, -1, "16MB", 1.5, True, None])
def test_the_limits_are_checked(settings, app, key, check_id, bad):
    from tom_mma.checks_limits import check_inflate_limit
    from tom_mma_broker.checks import check_message_size

    check = check_inflate_limit if app == "TOM_MMA" else check_message_size
    assert [m.id for m in check()] == []  # the defaults pass
    setattr(settings, app, {**getattr(settings, app), key: bad})
    assert [m.id for m in check()] == [check_id]


# -- the real ingest path --------------------------------------------------------------------------------
PHOTOMETRY_TOPIC = "poison.photometry"
ZTF_TOPIC = "poison.ztf"


def _envelope(payload: bytes, topic: str, fmt: str | None, offset: int):
    from tom_mma_broker.ingest import Envelope

    message_id = uuid.uuid4()
    headers = [("_id", message_id.bytes)] + ([("_format", fmt.encode())] if fmt else [])
    return message_id, Envelope(topic=topic, payload=payload, headers=headers, partition=0, offset=offset)


def _points(n_objects: int, per_object: int) -> list[PhotometryMessage]:
    return [
        PhotometryMessage.create(
            object_name=f"POISON-{k:03d}", ra=10.0 + k, dec=-20.0 + k / 10, mjd=60000.0 + i / 7, band="gri"[i % 3],
            magnitude=19.0 + i / 100, magnitude_error=0.05, source="tom-mma poison test",
        )
        for k in range(n_objects)
        for i in range(per_object)
    ]  # fmt: skip


def _ztf_with_cutout(stamp: bytes, object_id: str) -> bytes:
    (record,), schema = optical_samples.records(optical_samples.ZTF_33)
    record = copy.deepcopy(record)
    record["objectId"] = object_id
    record["candid"] = record["candid"] + 1
    record["cutoutScience"]["stampData"] = stamp
    out = io.BytesIO()
    fastavro.writer(out, schema, [record])
    return out.getvalue()


@pytest.mark.django_db
def test_one_percent_poison_is_quarantined_with_reasons_and_the_rest_stored_once(limits, settings, tmp_path):
    from tom_dataproducts.models import DataProduct
    from tom_targets.models import Target

    from tom_mma.handlers.optical import ztf_handler
    from tom_mma_broker.handlers import photometry_handler
    from tom_mma_broker.ingest import Ingestor, Outcome
    from tom_mma_broker.models import ArchivedAlert, CandidatePoint, QuarantinedAlert

    settings.MEDIA_ROOT = str(tmp_path)
    points = _points(20, 30)  # 600 good points
    good: dict[uuid.UUID, object] = {}
    poison: dict[uuid.UUID, tuple[str, str]] = {}  # id -> (stage, what its reason says)
    envelopes = []
    for point in points:
        message_id, env = _envelope(point.to_json(), PHOTOMETRY_TOPIC, "json", len(envelopes))
        good[message_id] = point
        envelopes.append(env)
    ztf_id, env = _envelope(optical_samples.ZTF_33.read_bytes(), ZTF_TOPIC, None, len(envelopes))
    envelopes.append(env)
    bad_point = {**points[0].to_dict(), "ra": 400.0, "point_id": "f" * 32}
    oversized = json.dumps({**points[1].to_dict(), "pad": "x" * (3 * MiB)}).encode()
    for payload, topic, fmt, stage, reason in [
        (points[2].to_json()[:40], PHOTOMETRY_TOPIC, "json", "decode", "invalid JSON"),
        (json.dumps(bad_point).encode(), PHOTOMETRY_TOPIC, "json", "handle", "ra must be in [0, 360)"),
        (oversized, PHOTOMETRY_TOPIC, "json", "size", "above TOM_MMA_BROKER['MAX_MESSAGE_BYTES'] = 2097152"),
        (_ztf_with_cutout(gzip_bomb(prefix=FITS_HEAD), "ZTF99poison"), ZTF_TOPIC, None, "handle",
         "science cutout: inflates beyond"),
        (gzip_bomb(), ZTF_TOPIC, None, "handle", "gzip file: inflates beyond 8388608 bytes"),
        (avro_deflate_bomb(), ZTF_TOPIC, None, "decode", "Avro deflate block: inflates beyond 8388608 bytes"),
    ]:  # fmt: skip
        message_id, env = _envelope(payload, topic, fmt, len(envelopes))
        poison[message_id] = (stage, reason)
        envelopes.append(env)
    random.Random(13).shuffle(envelopes)
    assert len(poison) / len(envelopes) < 0.011  # about 1%

    ingestor = Ingestor({PHOTOMETRY_TOPIC: photometry_handler, ZTF_TOPIC: ztf_handler})
    results = []
    for start in range(0, len(envelopes), 100):  # batches, as the stream makes them
        results += ingestor.ingest(envelopes[start : start + 100])

    outcomes = {r.envelope.message_id: r.outcome for r in results}
    assert {i for i, o in outcomes.items() if o is Outcome.QUARANTINED} == set(poison)
    assert {i for i, o in outcomes.items() if o is Outcome.HANDLED} == set(good) | {ztf_id}

    # independent queries against the ids sent
    sent = {e.message_id for e in envelopes}
    table = ArchivedAlert._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT status, COUNT(*) FROM {table} GROUP BY status")
        by_status = dict(cursor.fetchall())
    assert by_status == {"handled": len(good) + 1, "quarantined": len(poison)}
    assert set(ArchivedAlert.objects.values_list("message_id", flat=True)) == sent  # each once, none else
    quarantined = {q.alert.message_id: q for q in QuarantinedAlert.objects.select_related("alert")}
    assert set(quarantined) == set(poison)
    for message_id, (stage, reason) in poison.items():
        q = quarantined[message_id]
        assert (q.stage, q.attempts) == (stage, 1), (q.stage, q.reason)  # permanent: never retried
        assert reason in q.reason, q.reason
        assert q.alert.status == ArchivedAlert.Status.QUARANTINED
    # nothing half stored: exactly the good points, each once, from the good messages
    stored = list(CandidatePoint.objects.values_list("point_id", "message_id"))
    assert sorted(p for p, _ in stored) == sorted(p.point_id for p in good.values())
    assert {m for _, m in stored} == set(good)
    assert not Target.objects.filter(name="ZTF99poison").exists()
    (ztf_record,), _ = optical_samples.records(optical_samples.ZTF_33)
    target = Target.objects.get(name=ztf_record["objectId"])
    assert DataProduct.objects.filter(target=target).exists()
    assert DataProduct.objects.exclude(target=target).count() == 0
    # the oversized message is kept as its head only, with its true size
    big = ArchivedAlert.objects.get(size=len(oversized))
    assert len(bytes(big.payload)) == 4096 and big.content is None


@pytest.mark.django_db
def test_bombs_through_the_ingest_path_stay_within_the_stated_memory(limits, settings, tmp_path):
    from tom_mma.handlers.optical import ztf_handler
    from tom_mma_broker.ingest import Ingestor, Outcome

    settings.MEDIA_ROOT = str(tmp_path)
    bombs = [
        _envelope(gzip_bomb(), ZTF_TOPIC, None, 0)[1],
        _envelope(avro_deflate_bomb(), ZTF_TOPIC, None, 1)[1],
        _envelope(_ztf_with_cutout(gzip_bomb(prefix=FITS_HEAD), "ZTF99bomb"), ZTF_TOPIC, None, 2)[1],
    ]
    ingestor = Ingestor({ZTF_TOPIC: ztf_handler})
    results, peak = peak_of(lambda: ingestor.ingest(bombs))
    assert [r.outcome for r in results] == [Outcome.QUARANTINED] * 3
    # the limit (8 MiB here; 512 MiB by default) once, not once per bomb: what a refused bomb inflated is dropped
    # before its error is raised (the error lives until the batch ends); plus the margin and a few copies of the
    # messages' own bytes (reading a block, a BytesIO), which MAX_MESSAGE_BYTES bounds
    sent = sum(len(e.payload) for e in bombs)
    assert peak < limits + MARGIN + 4 * sent


@pytest.mark.django_db
def test_an_oversized_message_is_not_handled_again(limits):
    from tom_mma_broker.ingest import Ingestor, Outcome
    from tom_mma_broker.models import ArchivedAlert, QuarantinedAlert
    from tom_mma_broker.quarantine import rehandle

    calls = []
    handlers = {PHOTOMETRY_TOPIC: lambda alert, metadata: calls.append(alert)}
    envelope = _envelope(b"[" + b"1," * (MiB + 10) + b"1]", PHOTOMETRY_TOPIC, "json", 0)[1]
    [result] = Ingestor(handlers).ingest([envelope])
    assert result.outcome is Outcome.QUARANTINED and "oversized message" in result.reason
    alert = ArchivedAlert.objects.get()
    from tom_mma_broker.envelope import HandlerMap

    assert rehandle(alert.pk, HandlerMap(handlers)) == "failed"
    assert calls == []
    q = QuarantinedAlert.objects.get()
    assert q.stage == "size" and "only the first 4096 were archived" in q.reason


# -- the same through the real stream: the embedded Kafka broker, the reliable stream, the database ----------
@pytest.mark.kafka
@pytest.mark.django_db(transaction=True)
def test_poison_through_the_kafka_stream_is_quarantined_and_the_stream_goes_on(kafka_broker, topic, settings):
    import uuid as uuid_module

    from tests.conftest import stream_config
    from tests.test_reliability_stream import publish_raw, run_stream
    from tests.testapp.models import HandledMessage
    from tom_mma_broker.embedded import create_topics
    from tom_mma_broker.models import ArchivedAlert, QuarantinedAlert

    settings.TOM_MMA = {**settings.TOM_MMA, "MAX_INFLATED_BYTES": 8 * MiB}
    settings.TOM_MMA_BROKER = {**settings.TOM_MMA_BROKER, "MAX_MESSAGE_BYTES": 64 * 1024}
    optical = f"{topic}.ztf"
    create_topics(kafka_broker.bootstrap, [optical])
    config = stream_config(topic)
    config["OPTIONS"]["TOPIC_HANDLERS"][optical] = "tom_mma.handlers.optical.ztf_handler"

    good = [json.dumps({"seq": i}).encode() for i in range(200)]
    ids = publish_raw(kafka_broker, topic, good[:100])
    poison = publish_raw(kafka_broker, topic, [b'{"seq": ', json.dumps({"seq": -1, "pad": "x" * 100_000}).encode()])
    ids += publish_raw(kafka_broker, topic, good[100:])
    small_bomb = gzip_bomb(64 * MiB)  # about 64 KB: under MAX_MESSAGE_BYTES, inflates past MAX_INFLATED_BYTES
    poison += publish_raw(kafka_broker, optical, [small_bomb], fmt="blob")

    stats = run_stream(config, max_messages=203)

    assert stats["handled"] == 200 and stats["quarantined"] == 3, stats
    assert sorted(HandledMessage.objects.values_list("seq", flat=True)) == list(range(200))
    as_uuids = {uuid_module.UUID(str(i)) for i in ids}
    handled = set(ArchivedAlert.objects.filter(status="handled").values_list("message_id", flat=True))
    assert handled == as_uuids
    reasons = {q.alert.message_id: (q.stage, q.reason) for q in QuarantinedAlert.objects.select_related("alert")}
    assert set(reasons) == {uuid_module.UUID(str(i)) for i in poison}
    stages = sorted(stage for stage, _ in reasons.values())
    assert stages == ["decode", "handle", "size"], reasons
    assert any("inflates beyond 8388608 bytes" in reason for _, reason in reasons.values())
    assert any("above TOM_MMA_BROKER['MAX_MESSAGE_BYTES'] = 65536" in reason for _, reason in reasons.values())


def test_an_xml_entity_bomb_is_refused_with_bounded_memory():
    """A VOEvent that is a "billion laughs" (entities within entities, 10**9 'lol' expanded): hop's VOEvent
    reader disables entities, so it is refused at once, having expanded nothing."""
    from tom_mma_broker.formats import DecodeError, decode

    entities = b"".join(b'<!ENTITY lol%d "%s">' % (i + 1, (b"&lol%d;" % i if i else b"&lol;") * 10) for i in range(9))
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">' + entities + b"]>"
        b'<voe:VOEvent xmlns:voe="http://www.ivoa.net/xml/VOEvent/v2.0">&lol9;</voe:VOEvent>'
    )
    with pytest.raises(DecodeError):  # the first call imports the reader (its allocations are not the bomb's)
        decode("voevent", bomb)
    outcome, peak = peak_of(lambda: decode("voevent", bomb))
    assert isinstance(outcome, DecodeError) and "entities are disabled" in str(outcome)
    assert peak < 4 * MiB  # 10**9 expanded 'lol's would be 3 GB
