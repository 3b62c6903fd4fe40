"""Optical alerts a batch at a time: the ingest hands a run of messages to the handler's ``batch`` at once.

Through the ingest path the stream and ``replayalerts`` share (:class:`tom_mma_broker.ingest.Ingestor`), with
real Fink ZTF and Rubin alerts in Fink's livestream form (schemaless Avro, the schema as key); the database is
the suite's (both legs).
"""

from __future__ import annotations

import copy

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.db.models.signals import post_save
from django.test.utils import CaptureQueriesContext
from guardian.shortcuts import get_perms
from tom_dataproducts.models import DataProduct, PhotometryReducedDatum, ReducedDatum
from tom_targets.models import Target, TargetName

from tests import optical_samples as s
from tom_mma import deferred, signals
from tom_mma.handlers import optical as handlers
from tom_mma.optical import service
from tom_mma.optical.alerts import normalise
from tom_mma_broker.ingest import Envelope, Ingestor, Outcome
from tom_mma_broker.models import ArchivedAlert, QuarantinedAlert

pytestmark = pytest.mark.django_db

ZTF_TOPIC = "test.batch.fink-ztf"
LSST_TOPIC = "test.batch.fink-lsst"


@pytest.fixture(autouse=True)
def optical_settings(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.TOM_MMA = {}
    return settings


@pytest.fixture
def sent():
    """The optical_photometry_added signals, as (target name, points)."""
    log = []

    def on_points(sender, target, alert, points, placements, gw_event, **kw):
        log.append((target.name, points))

    signals.optical_photometry_added.connect(on_points)
    yield log
    signals.optical_photometry_added.disconnect(on_points)


def ztf_record(i: int, ra: float | None = None, dec: float | None = None) -> tuple[dict, dict]:
    (record,), schema = s.records(s.FINK_ZTF)
    record = copy.deepcopy(record)
    record["objectId"] = f"ZTF26batch{i:04d}"
    record["candid"] = record["candid"] + i
    record["candidate"] = dict(record["candidate"], candid=record["candid"])
    record["candidate"]["ra"] = 10.0 + i * 0.01 if ra is None else ra
    record["candidate"]["dec"] = -20.0 + i * 0.01 if dec is None else dec
    return record, schema


def ztf_envelopes(records: list[tuple[dict, dict]], start: int = 0) -> list[Envelope]:
    out = []
    for k, (record, schema) in enumerate(records):
        value, key = s.fink_message(record, schema)
        out.append(Envelope(topic=ZTF_TOPIC, payload=value, partition=0, offset=start + k, kafka_key=key))
    return out


def ingestor() -> Ingestor:
    return Ingestor({ZTF_TOPIC: handlers.fink_ztf_handler, LSST_TOPIC: handlers.fink_lsst_handler})


def test_a_batch_takes_the_same_queries_for_5_alerts_as_for_20():
    """Set-based: the ingest's queries do not grow with the batch (one-by-one it was ~20 per alert).

    (What runs after the commit, the classifier's receiver, is not counted: the test's transaction never commits.)
    """
    counts = []
    for size, start in ((5, 0), (20, 100)):
        envelopes = ztf_envelopes([ztf_record(start + i) for i in range(size)], start=start)
        with CaptureQueriesContext(connection) as queries:
            results = ingestor().ingest(envelopes)
        assert [r.outcome for r in results] == [Outcome.HANDLED] * size
        counts.append(len(queries))
    assert Target.objects.count() == 25
    # 15 more alerts, fewer than one more query each (SQLite splits bulk inserts by its parameter limit)
    assert counts[1] - counts[0] < 15, counts


def test_two_alerts_of_one_object_in_a_batch_grow_one_target(sent, django_capture_on_commit_callbacks):
    first, schema = ztf_record(1)
    later = copy.deepcopy(first)
    later["prv_candidates"] = [*first["prv_candidates"], {**first["candidate"]}]
    later["candid"] = first["candid"] + 1000  # not the candid of ztf_record(2)
    later["candidate"] = {**first["candidate"], "candid": later["candid"], "jd": first["candidate"]["jd"] + 1}
    later["candidate"]["magpsf"] = 17.25
    # another object within the cone of the first (0.5"): merged into it by position, its name an alias
    near, _ = ztf_record(2, ra=first["candidate"]["ra"], dec=first["candidate"]["dec"] + 0.5 / 3600)
    far, _ = ztf_record(3)
    envelopes = ztf_envelopes([(first, schema), (later, schema), (near, schema), (far, schema)])
    with django_capture_on_commit_callbacks(execute=True):
        results = ingestor().ingest(envelopes)
    assert [r.outcome for r in results] == [Outcome.HANDLED] * 4
    assert sorted(Target.objects.values_list("name", flat=True)) == sorted([first["objectId"], far["objectId"]])
    target = Target.objects.get(name=first["objectId"])
    assert TargetName.objects.get(name=near["objectId"]).target_id == target.pk
    expected = {(p.mjd, p.band, p.magnitude, p.limit) for r in (first, later, near) for p in normalise(r).points}
    stored = PhotometryReducedDatum.objects.filter(target=target)
    assert stored.count() == len(expected)
    # the later alert added only its new candidate, the near one nothing (its history is the first's)
    assert [(name, len(points)) for name, points in sent] == [
        (first["objectId"], len(normalise(first).points)),
        (first["objectId"], 1),
        (far["objectId"], len(normalise(far).points)),
    ]
    # the newest alert's stamps are the ones kept (OPTICAL_CUTOUTS_KEPT = 1)
    products = set(DataProduct.objects.filter(target=target).values_list("product_id", flat=True))
    assert products == {f"optical:ZTF:{later['candid']}:{k}" for k in ("science", "template", "difference")}
    assert ReducedDatum.objects.filter(target=target, data_type=service.FINK_HISTORY_TYPE).count() == 3

    # the same alerts again, as new messages (another path): nothing grows
    with django_capture_on_commit_callbacks(execute=True):
        again = ingestor().ingest(ztf_envelopes([(first, schema), (later, schema), (near, schema)], start=10))
    assert [r.outcome for r in again] == [Outcome.HANDLED] * 3
    assert Target.objects.count() == 2 and PhotometryReducedDatum.objects.filter(target=target).count() == len(expected)
    assert DataProduct.objects.filter(target=target).count() == 3
    assert ReducedDatum.objects.filter(target=target, data_type=service.FINK_HISTORY_TYPE).count() == 3
    assert len(sent) == 3  # no new point: no signal
    # and the same messages: duplicates in the archive, no handler run
    replayed = ingestor().ingest(envelopes)
    assert {r.outcome for r in replayed} == {Outcome.DUPLICATE}


def test_a_malformed_alert_in_a_batch_is_quarantined_and_the_rest_handled(django_capture_on_commit_callbacks):
    good = [ztf_record(i) for i in range(4)]
    envelopes = ztf_envelopes(good)
    value, key = s.fink_message(*ztf_record(9))
    envelopes.insert(2, Envelope(topic=ZTF_TOPIC, payload=value[: len(value) // 3], partition=0, offset=50,
                                 kafka_key=key))  # fmt: skip
    (rubin,), rubin_schema = s.records(s.rubin_sample("11.0"))
    rubin_value, rubin_key = s.fink_message(rubin, rubin_schema)
    envelopes.insert(4, Envelope(topic=ZTF_TOPIC, payload=rubin_value, partition=0, offset=51, kafka_key=rubin_key))
    with django_capture_on_commit_callbacks(execute=True):
        results = ingestor().ingest(envelopes)
    outcomes = [r.outcome for r in results]
    assert outcomes == [Outcome.HANDLED] * 2 + [Outcome.QUARANTINED] + [Outcome.HANDLED] + [Outcome.QUARANTINED] + [
        Outcome.HANDLED
    ]
    reasons = sorted(QuarantinedAlert.objects.values_list("reason", flat=True))
    assert len(reasons) == 2 and any("truncated" in r for r in reasons) and any("another survey" in r for r in reasons)
    assert all(q.attempts == 1 for q in QuarantinedAlert.objects.all())  # permanent: not retried
    assert sorted(Target.objects.values_list("name", flat=True)) == sorted(r["objectId"] for r, _ in good)
    assert ArchivedAlert.objects.filter(status=ArchivedAlert.Status.HANDLED).count() == 4


def test_new_targets_of_a_batch_get_the_groups_hooks_and_one_ranking_task(
    optical_settings, monkeypatch, django_capture_on_commit_callbacks
):
    optical_settings.TOM_MMA = {"OPTICAL_TARGET_GROUPS": ["Fink watchers", "observers"]}
    hooked, saved, queued = [], [], []
    optical_settings.HOOKS = {**optical_settings.HOOKS, "target_post_save": "tests.test_optical_batch.record_hook"}
    monkeypatch.setattr("tests.test_optical_batch.HOOKED", hooked)
    original = deferred.send

    def spy(task, *args, **kwargs):  # records what is queued, and queues it as before
        queued.append((task.name, args))
        return original(task, *args, **kwargs)

    monkeypatch.setattr(deferred, "send", spy)

    def on_save(sender, instance, created, **kwargs):
        saved.append((instance.name, created))

    post_save.connect(on_save, sender=Target)
    try:
        records = [ztf_record(i) for i in range(6)]
        with django_capture_on_commit_callbacks(execute=True):
            results = ingestor().ingest(ztf_envelopes(records))
    finally:
        post_save.disconnect(on_save, sender=Target)
    assert [r.outcome for r in results] == [Outcome.HANDLED] * 6
    names = [r["objectId"] for r, _ in records]
    assert sorted(saved) == sorted((n, True) for n in names)
    assert sorted(hooked) == sorted(names)
    for target in Target.objects.all():
        for group in ("Fink watchers", "observers"):
            assert set(get_perms(Group.objects.get(name=group), target)) >= {"view_target", "change_target"}
    ranking = [args for name, args in queued if name.endswith("rank_targets_task")]
    assert len(ranking) == 1 and sorted(ranking[0][0]) == sorted(Target.objects.values_list("pk", flat=True))


HOOKED: list = []


def record_hook(target, created):
    """A ``target_post_save`` hook for the test above."""
    HOOKED.append(target.name)


@pytest.mark.skipif("connection.vendor != 'postgresql'", reason="the COPY path is PostgreSQL's")
def test_the_copy_path_stores_what_the_orm_stores(monkeypatch, optical_settings):
    # the twin below is another Target by name only; stamps' product ids are unique across Targets: none kept
    optical_settings.TOM_MMA = {"OPTICAL_MATCH_RADIUS_ARCSEC": 0, "OPTICAL_CUTOUTS_KEPT": 0}
    raw, schema = s.records(s.FINK_LSST)
    record = next(r for r in raw if (r["diaObject"] or {}).get("diaObjectId"))
    alert = normalise(record)
    assert len(alert.points) >= 2
    twin = normalise(
        dict(record, diaObject=dict(record["diaObject"], diaObjectId=1, dec=record["diaObject"]["dec"] - 1))
    )
    monkeypatch.setattr(service, "COPY_MIN_ROWS", 1)
    (copied,) = service.ingest_optical_alerts([alert])
    monkeypatch.setattr(service, "COPY_MIN_ROWS", 10**9)
    (orm,) = service.ingest_optical_alerts([twin])
    assert copied.photometry_added == orm.photometry_added == len(alert.points)
    fields = [f.attname for f in PhotometryReducedDatum._meta.concrete_fields if f.attname not in ("id", "target_id")]

    def rows(target):
        return sorted(
            PhotometryReducedDatum.objects.filter(target=target).values_list(*fields),
            key=lambda row: (row[fields.index("timestamp")], row[fields.index("bandpass")]),
        )

    assert copied.target.pk != orm.target.pk
    assert rows(copied.target) == rows(orm.target)


# -- the ingest's batch protocol, with a handler of this module ------------------------------------
CALLS: list = []


def plain_handler(alert, metadata):
    """Handles one message; ``{"fail": ...}`` fails while the retries last (``transient``) or always."""
    content = alert.content
    CALLS.append(("one", content["n"]))
    if content.get("fail") == "always":
        raise ValueError(f"message {content['n']} is bad")
    return None


def _batch(messages):
    CALLS.append(("batch", [m.content["n"] for m, _ in messages]))
    if any(m.content.get("fail") == "batch" for m, _ in messages):
        raise RuntimeError("the batch failed")
    # a message it cannot take is returned as its (non-permanent) error: the ingest runs it alone
    return [ValueError("not in a batch") if m.content.get("fail") else None for m, _ in messages]


plain_handler.batch = _batch


def _json_envelopes(bodies):
    import json

    return [
        Envelope(topic="test.batch.plain", payload=json.dumps(b).encode(), headers=[("_format", b"json")],
                 partition=0, offset=b["n"])
        for b in bodies
    ]  # fmt: skip


def test_a_failing_batch_is_handled_one_by_one_and_a_failed_message_alone():
    ingest = Ingestor({"test.batch.plain": plain_handler}, max_attempts=2, retry_delay=0)
    CALLS.clear()
    results = ingest.ingest(_json_envelopes([{"n": 0}, {"n": 1, "fail": "batch"}, {"n": 2}]))
    assert [r.outcome for r in results] == [Outcome.HANDLED] * 3
    assert CALLS == [("batch", [0, 1, 2]), ("one", 0), ("one", 1), ("one", 2)]

    CALLS.clear()
    results = ingest.ingest(_json_envelopes([{"n": 10}, {"n": 11, "fail": "always"}, {"n": 12}]))
    assert [r.outcome for r in results] == [Outcome.HANDLED, Outcome.QUARANTINED, Outcome.HANDLED]
    assert "message 11 is bad" in results[1].reason
    # the batch took 10 and 12; 11 alone, tried twice (max_attempts), then quarantined
    assert CALLS == [("batch", [10, 11, 12]), ("one", 11), ("one", 11)]
    assert QuarantinedAlert.objects.get().attempts == 2
