"""The GW service layer through the LVK topic handlers, with hop message objects and the real MS181101ab notices.

Handlers get ``hop.models.AvroBlob``/``JSONBlob`` and a hop ``Metadata``, as the stream gives them. Facilities
are in-process fakes (they stand for remote observatories).
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from hop.io import Metadata
from hop.models import AvroBlob, JSONBlob
from tom_observations.facility import BaseManualObservationFacility, BaseRoboticObservationFacility
from tom_observations.models import ObservationRecord
from tom_targets.models import Target

from tests.lvk_samples import DATA, SEQUENCE, avro_record, burst_record, json_form
from tom_mma import receivers, signals
from tom_mma.gw import observations, ranking
from tom_mma.gw.notices import NoticeError
from tom_mma.gw.skymaps import read_multiorder
from tom_mma.handlers.lvk import gcn_igwn_gwalert_handler, igwn_gwalert_handler
from tom_mma.models import EventCandidate, EventNotice, EventObservation, EventSkyMap, GWEvent

pytestmark = pytest.mark.django_db

BEST = (194.30419921874997, -17.856895095545468)  # the most probable position of MS181101ab


# -- messages ----------------------------------------------------------------------------------------------
_offsets = itertools.count()


def metadata(topic: str) -> Metadata:
    return Metadata(topic=topic, partition=0, offset=next(_offsets), timestamp=0, key=None, headers=[], _raw=None)


def avro_message(name: str) -> AvroBlob:
    if name == "later-map":
        # an update after all the others whose GW map is the (narrower) combined map: a new version
        record = avro_record("ext-update")
        return AvroBlob(
            content=dict(
                record,
                external_coinc=None,
                time_created="2018-11-01T22:40:00Z",
                event=dict(record["event"], skymap=record["external_coinc"]["combined_skymap"]),
            )
        )
    return AvroBlob.load_file(DATA / f"MS181101ab-{name}.avro")


def json_message(name: str) -> JSONBlob:
    path = DATA / f"MS181101ab-{name}.json"
    if path.exists():
        return JSONBlob.load(path.read_bytes())
    return JSONBlob(content=json_form(avro_record(name)))


@pytest.fixture(autouse=True)
def gw_setup(settings):
    settings.TOM_MMA = {"ACCEPT_MOCK_EVENTS": True}
    receivers.connect()  # what TomMmaConfig.ready() does; idempotent


@pytest.fixture
def deliver(django_capture_on_commit_callbacks):
    """Hand a message to a handler as the stream would, and run what it queued on commit."""

    def _deliver(message, transport: str = "avro"):
        handler = igwn_gwalert_handler if transport == "avro" else gcn_igwn_gwalert_handler
        topic = "igwn.gwalert" if transport == "avro" else "gcn.notices.igwn.gwalert"
        with django_capture_on_commit_callbacks(execute=True):
            return handler(message, metadata(topic))

    return _deliver


@pytest.fixture
def targets(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        return {
            "best": Target.objects.create(name="at-best", type="SIDEREAL", ra=BEST[0], dec=BEST[1]),
            "near": Target.objects.create(name="near", type="SIDEREAL", ra=196.0, dec=-18.5),
            "far": Target.objects.create(name="far", type="SIDEREAL", ra=10.0, dec=60.0),
            "comet": Target.objects.create(name="comet", type="NON_SIDEREAL"),
        }


@pytest.fixture
def received():
    """Signals sent, in order."""
    log = []

    def on_notice(sender, notice, event, **kw):
        log.append(("notice", notice.alert_type))

    def on_skymap(sender, event, skymap, **kw):
        log.append(("skymap", skymap.sha256[:12]))

    def on_retracted(sender, event, notice, never_live, **kw):
        log.append(("retracted", event.superevent_id, never_live))

    signals.gw_notice_received.connect(on_notice)
    signals.gw_skymap_updated.connect(on_skymap)
    signals.gw_event_retracted.connect(on_retracted)
    yield log
    signals.gw_notice_received.disconnect(on_notice)
    signals.gw_skymap_updated.disconnect(on_skymap)
    signals.gw_event_retracted.disconnect(on_retracted)


def timeline(event: GWEvent) -> list[tuple[str, str]]:
    return [(n.alert_type, n.digest) for n in event.notices.order_by("time_created", "alert_rank", "digest")]


def state_of(event_id: str) -> dict:
    event = GWEvent.objects.get(superevent_id=event_id)
    return {
        "state": event.state,
        "timeline": timeline(event),
        "skymap": event.skymap.sha256 if event.skymap else None,
        "skymaps": sorted(event.skymaps.values_list("kind", "sha256", "first_time_created")),
        "candidates": sorted(
            event.candidates.values_list("target__name", "credible_level", "probdensity", "retracted")
        ),
        "far": event.far,
        "retracted_at": event.retracted_at,
    }


# -- the sequence ------------------------------------------------------------------------------------------
def test_sequence_in_order(deliver, targets, received):
    for name in SEQUENCE[:-1]:
        result = deliver(avro_message(name))
        assert result.created
    event = GWEvent.objects.get(superevent_id="MS181101ab")
    assert event.kind == GWEvent.Kind.MOCK and event.state == GWEvent.State.ACTIVE
    assert [n.alert_type for n in event.notices.all()] == ["EARLYWARNING", "PRELIMINARY", "INITIAL", "UPDATE", "UPDATE"]
    # one GW sky map (the same in all five notices) and the combined one of the ext-update
    versions = list(event.skymaps.order_by("kind"))
    assert [(v.kind, v.n_pixels, v.max_order) for v in versions] == [("combined", 19200, 11), ("gw", 19200, 11)]
    gw = event.skymap
    assert gw.kind == "gw" and gw.sha256.startswith("db875e1b8cc8")
    assert (gw.ra, gw.dec) == BEST
    assert (gw.distance_mean, gw.distance_std) == (39.76999609489013, 8.308435058808886)
    assert bytes(EventSkyMap.objects.get(pk=gw.pk).fits)[:9] == b"SIMPLE  ="  # multi-order FITS, as received
    assert (event.group, event.pipeline, event.far) == ("CBC", "gstlal", 9.11069936486e-14)
    assert event.classification["BNS"] == 0.95
    # candidates: every Target with a position, with the map's own numbers
    skymap = read_multiorder(avro_record("preliminary")["event"]["skymap"])
    names = [c.target.name for c in ranking.candidates(event)]
    assert names == ["at-best", "near", "far"]
    for c in ranking.candidates(event):
        expected = skymap.rank(np.array([c.target.ra]), np.array([c.target.dec]))
        assert c.probdensity == expected.probdensity[0]
        assert c.credible_level == expected.credible_level[0]
        assert c.distance_mean == pytest.approx(expected.distance_mean[0])
        assert not c.retracted
    best = ranking.candidates(event).first()
    assert best.credible_level == skymap.credible_level.min()
    assert 25 < best.distance_mean < 55
    assert ranking.credible_level("MS181101ab", *BEST) == best.credible_level
    assert ranking.credible_level("MS181101ab", 10.0, 60.0) > 0.999
    assert ranking.credible_level("S000000xx", *BEST) is None
    assert received.count(("skymap", "db875e1b8cc8")) == 1  # ranked once: later notices had the same map

    result = deliver(avro_message("retraction"))
    assert result.retracted
    event.refresh_from_db()
    assert event.state == GWEvent.State.RETRACTED and not event.never_live
    assert event.retracted_at.isoformat() == "2018-11-01T23:36:23+00:00"
    assert EventCandidate.objects.filter(event=event, retracted=False).count() == 0
    assert EventCandidate.objects.filter(event=event).count() == 3
    assert ranking.credible_level("MS181101ab", *BEST) is None
    assert [entry for entry in received if entry[0] != "skymap"] == [
        ("notice", t) for t in ["EARLYWARNING", "PRELIMINARY", "INITIAL", "UPDATE", "UPDATE"]
    ] + [("notice", "RETRACTION"), ("retracted", "MS181101ab", False)]


def test_replayed_twice_and_through_both_transports(deliver, targets, received):
    for name in SEQUENCE:
        deliver(avro_message(name))
    first = state_of("MS181101ab")
    sent = len(received)
    for name in SEQUENCE:
        assert not deliver(avro_message(name)).created
        assert not deliver(json_message(name), "json").created  # the same notices by GCN Kafka
    assert state_of("MS181101ab") == first
    assert len(received) == sent  # nothing sent again
    assert EventNotice.objects.count() == 6 and EventSkyMap.objects.count() == 2
    assert set(EventNotice.objects.values_list("transport", flat=True)) == {"avro"}


def test_json_transport_alone(deliver, targets):
    for name in SEQUENCE[:-1]:
        deliver(json_message(name), "json")
    event = GWEvent.objects.get(superevent_id="MS181101ab")
    assert event.notices.count() == 5 and event.candidates.count() == 3
    assert event.skymap.ra == BEST[0]
    deliver(json_message("retraction"), "json")
    event.refresh_from_db()
    assert event.state == GWEvent.State.RETRACTED


@pytest.mark.parametrize(
    "order",
    [
        ["retraction", "update", "later-map", "preliminary", "ext-update", "earlywarning", "initial"],
        ["later-map", "ext-update", "initial", "update", "earlywarning", "preliminary", "retraction"],
        ["earlywarning", "update", "later-map", "preliminary", "initial", "ext-update"],
    ],
)
def test_out_of_order(django_capture_on_commit_callbacks, order, targets):
    def run(names):
        with django_capture_on_commit_callbacks(execute=True):
            for name in names:
                igwn_gwalert_handler(avro_message(name), metadata("igwn.gwalert"))
        return state_of("MS181101ab")

    shuffled = run(order)
    GWEvent.objects.all().delete()
    in_order = run(sorted(order, key=(SEQUENCE[:-1] + ["later-map", "retraction"]).index))
    assert shuffled == in_order
    assert shuffled["skymap"].startswith("1e087b1837bd")  # the latest notice's map, whatever came last
    assert [t for t, _ in shuffled["timeline"]] == [
        "EARLYWARNING",
        "PRELIMINARY",
        "INITIAL",
        "UPDATE",
        "UPDATE",
        "UPDATE",
        "RETRACTION",
    ][: len(order)]


def test_late_notice_after_retraction_does_not_revive(deliver, targets, received):
    states = []

    def on_notice(sender, notice, event, **kw):
        states.append((notice.alert_type, event.state, event.never_live))

    signals.gw_notice_received.connect(on_notice)
    try:
        deliver(avro_message("retraction"))
        event = GWEvent.objects.get(superevent_id="MS181101ab")
        assert event.state == GWEvent.State.RETRACTED and event.never_live
        assert ("retracted", "MS181101ab", True) in received
        assert not GWEvent.objects.filter(state=GWEvent.State.ACTIVE).exists()
        deliver(avro_message("preliminary"))
    finally:
        signals.gw_notice_received.disconnect(on_notice)
    event.refresh_from_db()
    assert event.state == GWEvent.State.RETRACTED and not event.never_live
    assert event.candidates.count() == 0  # a retracted event ranks nothing
    assert received.count(("retracted", "MS181101ab", True)) == 1  # it became retracted once
    # the late notice is announced with its event retracted (and now seen live): what lets a receiver (the
    # broker) follow whatever cited the event with a retraction, whenever the event is or becomes retracted
    assert states == [("RETRACTION", "retracted", True), ("PRELIMINARY", "retracted", False)]


def test_retraction_of_an_event_never_seen(deliver):
    result = deliver(json_message("retraction"), "json")
    assert result.retracted
    event = GWEvent.objects.get()
    assert event.never_live and event.state == GWEvent.State.RETRACTED
    assert event.skymap is None and event.event_time is None


# -- kinds of event -----------------------------------------------------------------------------------------
def test_mock_events_ignored_unless_accepted(deliver, settings, targets):
    settings.TOM_MMA = {}
    result = deliver(avro_message("preliminary"))
    assert result.notice is None
    assert not GWEvent.objects.exists() and not EventSkyMap.objects.exists()


def test_test_and_real_events(deliver, settings, targets):
    record = avro_record("preliminary")
    for superevent_id, accepted in (("TS181101ab", False), ("S181101ab", True)):
        result = deliver(AvroBlob(content=dict(record, superevent_id=superevent_id)))
        assert (result.notice is not None) is accepted
    settings.TOM_MMA = {"ACCEPT_TEST_EVENTS": True}
    assert deliver(AvroBlob(content=dict(record, superevent_id="TS181101ab"))).created
    assert dict(GWEvent.objects.values_list("superevent_id", "kind")) == {"S181101ab": "real", "TS181101ab": "test"}


def test_burst_event_has_no_distance(deliver, targets):
    record = burst_record(duration=0.01, central_frequency=240.0)
    deliver(AvroBlob(content=record))
    event = GWEvent.objects.get(superevent_id="S230518h")
    assert event.group == "Burst" and event.skymap.distance_mean is None
    assert [(c.distance_mean, c.distance_std) for c in event.candidates.all()] == [(None, None)] * 3


# -- candidates ---------------------------------------------------------------------------------------------
def test_new_targets_are_ranked_as_they_arrive(deliver, django_capture_on_commit_callbacks):
    deliver(avro_message("preliminary"))
    event = GWEvent.objects.get()
    assert event.candidates.count() == 0
    with django_capture_on_commit_callbacks(execute=True):
        target = Target.objects.create(name="new", type="SIDEREAL", ra=BEST[0] + 0.5, dec=BEST[1])
    candidate = EventCandidate.objects.get(event=event, target=target)
    assert candidate.credible_level == ranking.credible_level("MS181101ab", BEST[0] + 0.5, BEST[1])
    with django_capture_on_commit_callbacks(execute=True):
        target.ra, target.dec = 10.0, 60.0
        target.save()
    candidate.refresh_from_db()
    assert candidate.credible_level > 0.999


def test_a_new_skymap_version_reranks(deliver, targets, received):
    deliver(avro_message("preliminary"))
    event = GWEvent.objects.get()
    before = dict(event.candidates.values_list("target__name", "credible_level"))
    # an update whose GW map is the (narrower) combined map: a new version
    record = avro_record("ext-update")
    newer = dict(
        record,
        external_coinc=None,
        time_created="2018-11-01T22:40:00Z",
        event=dict(record["event"], skymap=record["external_coinc"]["combined_skymap"]),
    )
    assert deliver(AvroBlob(content=newer)).skymap_changed
    event.refresh_from_db()
    assert event.skymap.sha256.startswith("1e087b1837bd")
    assert event.skymaps.count() == 2
    after = {c.target.name: c for c in event.candidates.select_related("target")}
    assert {c.skymap_id for c in after.values()} == {event.skymap.pk}
    assert after["at-best"].credible_level != before["at-best"]
    combined = read_multiorder(record["external_coinc"]["combined_skymap"])
    assert after["near"].credible_level == combined.rank(np.array([196.0]), np.array([-18.5])).credible_level[0]
    # an older notice arriving late does not take the current map back
    assert not deliver(avro_message("earlywarning")).skymap_changed
    event.refresh_from_db()
    assert event.skymap.sha256.startswith("1e087b1837bd")


def test_rank_event_covers_all_targets(deliver, targets):
    deliver(avro_message("preliminary"))
    event = GWEvent.objects.get()
    EventCandidate.objects.all().delete()
    assert ranking.rank_event(event.pk) == 3
    assert ranking.rank_event(event.pk) == 3  # idempotent
    assert EventCandidate.objects.count() == 3


# -- bad input ----------------------------------------------------------------------------------------------
def _bad_messages():
    good = avro_record("preliminary")
    doc = json.loads((DATA / "MS181101ab-preliminary.json").read_text())
    yield "avro", AvroBlob(content=dict(good, event=dict(good["event"], skymap=good["event"]["skymap"][:400_000])))
    yield "avro", AvroBlob(content=dict(good, alert_type="SIGNIFICANT"))
    yield "avro", AvroBlob(content=dict(good, event=dict(good["event"], far=None)))
    yield "json", JSONBlob(content=dict(doc, event=dict(doc["event"], skymap=doc["event"]["skymap"][:-2])))
    yield "json", JSONBlob(content=dict(doc, event=dict(doc["event"], skymap=doc["event"]["skymap"][:400_000])))
    ext = avro_record("ext-update")
    combined = ext["external_coinc"]["combined_skymap"]
    yield (
        "avro",
        AvroBlob(content=dict(ext, external_coinc=dict(ext["external_coinc"], combined_skymap=combined[:-2880]))),
    )


@pytest.mark.parametrize("transport, message", list(_bad_messages()))
def test_bad_input_raises_and_stores_nothing(deliver, targets, transport, message):
    with pytest.raises(NoticeError):
        deliver(message, transport)
    assert not GWEvent.objects.exists()
    assert not EventNotice.objects.exists() and not EventSkyMap.objects.exists()
    assert not EventCandidate.objects.exists()
    # the stream goes on: the next good notice is taken
    assert deliver(avro_message("preliminary")).created


# -- observation requests and the retraction cascade --------------------------------------------------------
class CancellableFacility(BaseRoboticObservationFacility):
    """Stands for a robotic observatory that cancels on request (a remote service)."""

    name = "GWTestRobotic"
    cancelled: list[str] = []

    def cancel_observation(self, observation_id):
        self.cancelled.append(observation_id)
        return observation_id != "refuse-me"

    def get_terminal_observing_states(self):
        return ["COMPLETED", "CANCELED"]

    def get_form(self, observation_type): ...
    def submit_observation(self, observation_payload): ...
    def validate_observation(self, observation_payload): ...
    def get_observation_url(self, observation_id):
        return ""

    def get_observing_sites(self):
        return {}

    def get_observation_status(self, observation_id):
        return {"state": "PENDING"}

    def data_products(self, observation_id, product_id=None):
        return []


class ManualFacility(BaseManualObservationFacility):
    """Stands for a classical telescope: no cancel API."""

    name = "GWTestManual"

    def get_terminal_observing_states(self):
        return ["COMPLETED"]

    def get_form(self, observation_type): ...
    def submit_observation(self, observation_payload): ...
    def validate_observation(self, observation_payload): ...
    def get_observation_url(self, observation_id):
        return ""

    def get_observing_sites(self):
        return {}


def test_retraction_cancels_or_flags_requests(deliver, targets, settings, django_capture_on_commit_callbacks):
    settings.TOM_FACILITY_CLASSES = [f"{__name__}.CancellableFacility", f"{__name__}.ManualFacility"]
    CancellableFacility.cancelled = []
    deliver(avro_message("preliminary"))
    event = GWEvent.objects.get()

    def request(facility, observation_id, status="PENDING"):
        record = ObservationRecord.objects.create(
            target=targets["best"], facility=facility, parameters={}, observation_id=observation_id, status=status
        )
        return observations.link_observation(event, record)

    links = {
        "robotic": request("GWTestRobotic", "r-1"),
        "refused": request("GWTestRobotic", "refuse-me"),
        "done": request("GWTestRobotic", "r-2", status="COMPLETED"),
        "manual": request("GWTestManual", "m-1"),
        "unknown": request("NoSuchFacility", "x-1"),
    }
    assert observations.link_observation(event, links["robotic"].observation_record) == links["robotic"]  # idempotent
    assert {link.status for link in links.values()} == {"active"}

    deliver(avro_message("retraction"))
    status = {k: EventObservation.objects.get(pk=v.pk) for k, v in links.items()}
    assert {k: v.status for k, v in status.items()} == {
        "robotic": "cancelled",
        "refused": "flagged",
        "done": "not_needed",
        "manual": "flagged",
        "unknown": "flagged",
    }
    assert "cannot cancel" in status["manual"].reason
    assert "not configured" in status["unknown"].reason
    assert sorted(CancellableFacility.cancelled) == ["r-1", "refuse-me"]

    # a request made after the retraction is cancelled at once; handled links are not touched again
    with django_capture_on_commit_callbacks(execute=True):
        late = request("GWTestRobotic", "r-3")
    late.refresh_from_db()
    assert late.status == "cancelled"
    assert sorted(CancellableFacility.cancelled) == ["r-1", "r-3", "refuse-me"]


def test_signals_wait_for_the_commit(django_capture_on_commit_callbacks, received, targets):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        igwn_gwalert_handler(avro_message("preliminary"), metadata("igwn.gwalert"))
        assert received == []
    assert callbacks  # queued, run only after the commit
    for callback in callbacks:
        callback()
    assert received[0] == ("notice", "PRELIMINARY")


def test_a_failing_receiver_does_not_stop_the_cancellation_or_the_other_signals(
    deliver, targets, settings, received, caplog
):
    settings.TOM_FACILITY_CLASSES = [f"{__name__}.CancellableFacility"]
    CancellableFacility.cancelled = []
    deliver(avro_message("preliminary"))
    event = GWEvent.objects.get()
    record = ObservationRecord.objects.create(
        target=targets["best"], facility="GWTestRobotic", parameters={}, observation_id="r-1", status="PENDING"
    )
    link = observations.link_observation(event, record)

    def broken(sender, **kwargs):
        raise RuntimeError("a receiver with a bug")

    signals.gw_notice_received.connect(broken)
    try:
        deliver(avro_message("retraction"))
    finally:
        signals.gw_notice_received.disconnect(broken)
    link.refresh_from_db()
    assert link.status == "cancelled" and CancellableFacility.cancelled == ["r-1"]
    assert ("retracted", "MS181101ab", False) in received  # sent after the failing receiver
    assert "a receiver with a bug" in caplog.text


class UnreachableFacility(CancellableFacility):
    """Stands for a robotic observatory whose API cannot be reached (a remote service)."""

    name = "GWTestUnreachable"
    reachable = False
    attempts = 0

    def cancel_observation(self, observation_id):
        type(self).attempts += 1
        if not self.reachable:
            raise ConnectionError("facility API unreachable")
        return super().cancel_observation(observation_id)


def test_cancellations_left_pending_after_the_retries_are_swept_again(deliver, targets, settings, monkeypatch):
    from tom_mma.gw import tasks

    # Tasks run eagerly here. Without propagation an eager task's retries run at once, one after the other
    # (countdowns are ignored), and the last failure stays in its result: what a worker does, minus the waits.
    monkeypatch.setitem(tasks.cancel_observations_task.app.conf, "task_eager_propagates", False)
    settings.TOM_FACILITY_CLASSES = [f"{__name__}.UnreachableFacility"]
    UnreachableFacility.reachable, UnreachableFacility.attempts, UnreachableFacility.cancelled = False, 0, []
    deliver(avro_message("preliminary"))
    event = GWEvent.objects.get()
    record = ObservationRecord.objects.create(
        target=targets["best"], facility="GWTestUnreachable", parameters={}, observation_id="u-1", status="PENDING"
    )
    link = observations.link_observation(event, record)
    deliver(avro_message("retraction"))
    link.refresh_from_db()
    assert link.status == "cancel_pending"  # the task gave up after all its retries
    assert UnreachableFacility.attempts == 1 + tasks.cancel_observations_task.max_retries

    # the periodic sweep queues the event again, once per interval however long the facility stays down
    assert tasks.sweep_cancellations(older_than_s=0) == [event.pk]
    assert tasks.sweep_cancellations(older_than_s=3600) == []  # just touched: not queued again yet
    link.refresh_from_db()
    assert link.status == "cancel_pending"
    UnreachableFacility.reachable = True
    assert tasks.sweep_cancellations(older_than_s=0) == [event.pk]
    link.refresh_from_db()
    assert link.status == "cancelled" and UnreachableFacility.cancelled == ["u-1"]
    assert tasks.sweep_cancellations(older_than_s=0) == []  # nothing left to cancel


def test_the_example_tom_beats_the_cancellation_sweep():
    # the schedule is read from the example TOM's settings module (the tests run on tests.settings)
    import ast

    source = (Path(__file__).parents[1] / "example_tom" / "settings.py").read_text()
    tree = ast.parse(source)
    [schedule] = [
        node.value
        for node in tree.body
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "CELERY_BEAT_SCHEDULE" for t in node.targets)
    ]
    tasks_beaten = {entry["task"] for entry in ast.literal_eval(schedule).values()}
    assert "tom_mma.gw.tasks.sweep_cancellations" in tasks_beaten
    from tom_mma.gw.tasks import sweep_cancellations

    assert sweep_cancellations.name == "tom_mma.gw.tasks.sweep_cancellations"
