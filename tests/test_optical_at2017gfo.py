"""AT2017gfo seen by two surveys inside GW170817's region: one Target, one candidate, exactly one request.

AT2017gfo's published photometry (``tests/data/classifier/at2017gfo_okc.csv``, the Open Kilonova Catalog) is
replayed as the alerts two surveys would have sent: ZTF 4.02 packets (its g, r and i detections, one alert a
night, earlier detections as the history) and Rubin ``lsst.v11_0`` Confluent frames (its u g r i z y
detections, fluxes in nJy, earlier sources as ``prvDiaSources``), each survey under its own object id. They
go through the real embedded Kafka broker on two topics, with GW170817's notices (the replay's mock event and
its real sky map) on a third and the derived alerts coming back on a fourth, all read by one reliable stream
(Celery eager: the demo's layout). The two object ids meet in one Target by the cone match, the broker's
classifier scores one candidate, and the observation rule asks for one observation. Nothing is mocked.
"""

from __future__ import annotations

import copy
import csv
import io
import math
import threading
import uuid
from pathlib import Path

import fastavro
import pytest
from confluent_kafka import Producer
from tom_dataproducts.models import PhotometryReducedDatum
from tom_observations.models import ObservationRecord
from tom_targets.models import Target

from tests import optical_samples as s
from tom_mma.models import ObservationTrigger
from tom_mma_broker import demo
from tom_mma_broker.embedded import create_topics
from tom_mma_broker.gw170817 import publish, replay_messages
from tom_mma_broker.kafka import open_producer
from tom_mma_broker.models import ArchivedAlert, Candidate, QuarantinedAlert
from tom_mma_broker.streams import ReliableHopskotchAlertStream

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

OKC = Path(__file__).parent / "data" / "classifier" / "at2017gfo_okc.csv"
AT2017GFO = (197.450374, -23.381495)
MERGER_MJD = 57982.5285  # GW170817, 2017-08-17 12:41:04 UTC
ZTF_FID = {"g": 1, "r": 2, "i": 3}
RUBIN_BANDS = ("u", "g", "r", "i", "z", "y")
TAI_UTC_DAYS = 37 / 86400
NJY_AB_ZP = 31.4
ZTF_NAME = "ZTF17aagfokn"
RUBIN_OBJECT = 170817000001


def detections(survey: str) -> list[dict]:
    """The survey's share of AT2017gfo's detections after the merger, in time order.

    Each published measurement goes to one survey only (never the same point twice): ZTF takes every other
    g, r, i point, Rubin the rest and the u, z, y points.
    """
    with OKC.open() as f:
        rows = [r for r in csv.DictReader(f) if r["upper_limit"] == "0" and r["band"] in RUBIN_BANDS]
    points = sorted(
        ({"mjd": float(r["mjd"]), "band": r["band"], "mag": float(r["mag"]), "err": float(r["mag_err"] or 0.05)}
         for r in rows if float(r["mjd"]) > MERGER_MJD),
        key=lambda p: (p["mjd"], p["band"]),
    )  # fmt: skip
    shared = [p for p in points if p["band"] in ZTF_FID]
    ztf = shared[::2]
    if survey == "ZTF":
        return ztf
    return [p for p in points if not any(p is z for z in ztf)]


def nightly(points: list[dict]) -> list[tuple[dict, list[dict]]]:
    """(the night's last point, every earlier point) per night, as a survey alerts once a night."""
    out, nights = [], sorted({math.floor(p["mjd"]) for p in points})
    for night in nights:
        tonight = [p for p in points if math.floor(p["mjd"]) == night]
        latest = tonight[-1]
        out.append((latest, [p for p in points if p["mjd"] < latest["mjd"]]))
    return out


def _offset(i: int) -> tuple[float, float]:
    """A position within 0.3 arcsec of AT2017gfo's, varying from source to source as measurements do."""
    d = 0.3 / 3600 * math.sin(i)
    return AT2017GFO[0] + d / math.cos(math.radians(AT2017GFO[1])), AT2017GFO[1] + d / 2


def ztf_packets() -> list[bytes]:
    (base,), _ = s.records(s.ZTF_33)
    packets = []
    for n, (latest, history) in enumerate(nightly(detections("ZTF"))):
        ra, dec = _offset(n)
        candidate = {**base["candidate"], "jd": latest["mjd"] + 2400000.5, "fid": ZTF_FID[latest["band"]],
                     "magpsf": latest["mag"], "sigmapsf": latest["err"], "ra": ra, "dec": dec,
                     "candid": 1_700_000_000 + n, "isdiffpos": "t"}  # fmt: skip
        prv = [
            {**base["prv_candidates"][0], "jd": p["mjd"] + 2400000.5, "fid": ZTF_FID[p["band"]], "magpsf": p["mag"],
             "sigmapsf": p["err"], "ra": _offset(k)[0], "dec": _offset(k)[1], "candid": 1_600_000_000 + k,
             "isdiffpos": "t"}
            for k, p in enumerate(history)
        ]  # fmt: skip
        record = {**copy.deepcopy(base), "objectId": ZTF_NAME, "candid": candidate["candid"],
                  "candidate": candidate, "prv_candidates": prv}  # fmt: skip
        packets.append(s.ztf4_packet(s.ztf4_record(record)))
    return packets


def _rubin_source(template: dict, p: dict, n: int) -> dict:
    ra, dec = _offset(100 + n)
    flux = 10 ** ((NJY_AB_ZP - p["mag"]) / 2.5)
    return {**template, "diaSourceId": 9_000_000_000 + n, "diaObjectId": RUBIN_OBJECT, "ra": ra, "dec": dec,
            "midpointMjdTai": p["mjd"] + TAI_UTC_DAYS, "band": p["band"], "psfFlux": flux,
            "psfFluxErr": flux * p["err"] / 1.0857}  # fmt: skip


def rubin_frames() -> list[bytes]:
    (base,), _ = s.records(s.rubin_sample("11.0"))
    points = detections("LSST")
    index = {id(p): n for n, p in enumerate(points)}
    frames = []
    for latest, history in nightly(points):
        record = copy.deepcopy(base)
        record["diaSource"] = _rubin_source(base["diaSource"], latest, index[id(latest)])
        record["diaSourceId"] = record["diaSource"]["diaSourceId"]
        record["prvDiaSources"] = [_rubin_source(base["diaSource"], p, index[id(p)]) for p in history]
        record["prvDiaForcedSources"] = None
        record["diaObject"] = {**base["diaObject"], "diaObjectId": RUBIN_OBJECT, "ra": AT2017GFO[0],
                               "dec": AT2017GFO[1]}  # fmt: skip
        frames.append(s.confluent_frame(record, "lsst.v11_0"))
    return frames


@pytest.fixture
def topics(kafka_broker, settings, tmp_path) -> dict[str, str]:
    suffix = uuid.uuid4().hex[:8]
    names = {kind: f"at2017gfo.{kind}.{suffix}" for kind in ("gw", "ztf", "lsst", "results")}
    create_topics(kafka_broker.bootstrap, names.values())
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.TOM_MMA_BROKER = {**settings.TOM_MMA_BROKER, "RESULTS_TOPIC": names["results"]}
    settings.TOM_MMA = {**getattr(settings, "TOM_MMA", {}), "ACCEPT_MOCK_EVENTS": True}
    return names


def test_at2017gfo_from_ztf_and_rubin_is_one_target_one_candidate_and_one_request(kafka_broker, topics):
    # the data behind the test: both surveys see it for more than one night, each in its own bands
    ztf, rubin = ztf_packets(), rubin_frames()
    assert len(ztf) >= 3 and len(rubin) >= 3
    with open_producer(kafka_broker.url) as producer:  # the event first, as it was
        publish([m for m in replay_messages() if m.stream == "gw"], producer, {"gw": topics["gw"]}, speed=0)
        producer.flush()
    stream = ReliableHopskotchAlertStream(
        URL=kafka_broker.url, GROUP_ID=f"at2017gfo-{uuid.uuid4().hex[:6]}", START_POSITION="EARLIEST",
        TOPIC_HANDLERS={
            topics["gw"]: "tom_mma.handlers.lvk.igwn_gwalert_handler",
            topics["ztf"]: "tom_mma.handlers.optical.ztf_handler",
            topics["lsst"]: "tom_mma.handlers.optical.lsst_handler",
            topics["results"]: "tom_mma.handlers.derived.derived_alert_handler",
        },
    )  # fmt: skip
    thread = threading.Thread(target=stream.listen, daemon=True)
    thread.start()
    raw = Producer({"bootstrap.servers": kafka_broker.bootstrap})
    sent = 0
    try:
        # night by night, both surveys, each night's alerts handled (and scored) before the next night's
        for n in range(max(len(ztf), len(rubin))):
            for packets, topic in ((ztf, topics["ztf"]), (rubin, topics["lsst"])):
                if n < len(packets):
                    raw.produce(topic, value=packets[n], headers=[("_id", uuid.uuid4().bytes)])
                    sent += 1
            assert raw.flush(30) == 0

            def settled(expected: int = sent) -> bool:
                stored = ArchivedAlert.objects.filter(topic__in=[topics["ztf"], topics["lsst"]]).count()
                return stored == expected and demo.pipeline_settled([])

            assert demo.wait_until(settled, 120), (n, demo.summary().lines())
    finally:
        stream.stop()
        thread.join(30)

    assert not QuarantinedAlert.objects.exists(), list(QuarantinedAlert.objects.values_list("reason", flat=True))
    # one Target: the ZTF object and the Rubin object, the one found by the other's cone
    [target] = Target.objects.all()
    names = {target.name, *target.aliases.values_list("name", flat=True)}
    assert ZTF_NAME in names and any(str(RUBIN_OBJECT) in n for n in names), names
    bands = set(PhotometryReducedDatum.objects.filter(target=target).values_list("bandpass", flat=True))
    assert {"ztfg", "ztfr", "ztfi", "lsstu", "lsstz", "lssty"} <= bands, bands  # both surveys' bands, one Target
    # one candidate on the broker's side, with both surveys' points
    [candidate] = Candidate.objects.all()
    assert {"ztfg", "lsstz"} <= set(candidate.points.values_list("band", flat=True))
    assert candidate.classifications.exists()
    # and exactly one observation request, for that Target
    [trigger] = ObservationTrigger.objects.all()
    assert trigger.target_id == target.pk and trigger.status == "submitted", (trigger.status, trigger.error)
    assert ObservationRecord.objects.filter(target=target).count() == 1
    assert ObservationRecord.objects.count() == 1


def test_the_packets_are_what_the_surveys_send():
    """The built alerts decode as each survey's format, with the survey's own fields (the test's premise)."""
    from tom_mma.optical.packets import decode_confluent_frame

    record, version = decode_confluent_frame(rubin_frames()[-1])
    assert version == "lsst.v11_0" and record["diaObject"]["diaObjectId"] == RUBIN_OBJECT
    assert record["prvDiaSources"] and all(p["band"] in RUBIN_BANDS for p in record["prvDiaSources"])
    (ztf,) = list(fastavro.reader(io.BytesIO(ztf_packets()[-1])))
    assert ztf["schemavsn"] == "4.02" and ztf["objectId"] == ZTF_NAME
    assert ztf["candidate"]["fid"] in ZTF_FID.values() and ztf["prv_candidates"]
