"""One real row (or more) of every model of both apps, for the admin and API tests.

Made through the services wherever they exist: the GW170817 mock notice ranks the Targets, GRB 170817A is
linked to it, derived alerts merge into Targets, points are classified by the shipped model, a GCN notice
goes through the archive and a broken one into the quarantine. Rows that only a running facility or the
SNEWS decider would write are created directly.

Two groups: ``Public`` (``TOM_MMA['TARGET_GROUPS']``, where stream Targets go) and ``Secret``: the Target
``AT-secret`` is private to ``Secret``, so that a user outside that group must see neither it nor its rows.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.contrib.auth.models import Group, User
from tom_observations.models import ObservationRecord
from tom_targets.models import Target

from tests.test_derived_factories import candidate, make_alert
from tom_mma import receivers
from tom_mma.derived import ingest_derived_alert
from tom_mma.gw.events import ingest_notice
from tom_mma.gw.notices import parse_avro
from tom_mma.models import EventObservation, GWEvent, SimulatedObservation, TransientEvent
from tom_mma.targets import assign_target_permissions
from tom_mma.transients.events import ingest_transient_notice
from tom_mma.transients.notices import parse_notice
from tom_mma_broker.candidates import ingest_point
from tom_mma_broker.classification import score_candidate
from tom_mma_broker.gw170817.grb import build_grb_notice
from tom_mma_broker.gw170817.notice import build_notice, gw170817_skymap
from tom_mma_broker.ingest import Envelope, Ingestor
from tom_mma_broker.models import ArchivedAlert, Candidate, SnewsDeciderState
from tom_mma_broker.schemas.photometry import PhotometryMessage

__all__ = ["MARKUP", "Rows", "make_rows"]

MARKUP = "<script>alert(1)</script>"
AT2017GFO = (197.450375, -23.381494)


@dataclass
class Rows:
    event: GWEvent
    public: Target
    secret: Target
    markup: Target
    insider: User
    outsider: User
    staff: User
    grb: TransientEvent
    archived: ArchivedAlert
    broken: ArchivedAlert
    broker_candidate: Candidate


def _broken_handler(alert, metadata=None):
    raise ValueError("no 'superevent_id' in\n  the notice")


def make_rows(settings, django_capture_on_commit_callbacks) -> Rows:
    """Make the rows (call it from a fixture of the test module, with pytest-django's two fixtures)."""
    settings.TOM_MMA = {"ACCEPT_MOCK_EVENTS": True}
    settings.CELERY_TASK_ALWAYS_EAGER = True
    receivers.connect()
    secret_group = Group.objects.create(name="Secret")
    public_group, _ = Group.objects.get_or_create(name="Public")
    insider = User.objects.create_user("insider", password="pw")
    insider.groups.add(public_group, secret_group)
    outsider = User.objects.create_user("outsider", password="pw")
    outsider.groups.add(public_group)
    staff = User.objects.create_superuser("admin", "admin@example.org", "pw")

    with django_capture_on_commit_callbacks(execute=True):
        public = Target.objects.create(name="AT-public", type="SIDEREAL", ra=AT2017GFO[0], dec=AT2017GFO[1],
                                       permissions="PRIVATE")  # fmt: skip
        assign_target_permissions(public, ["Public"])
        secret = Target.objects.create(name="AT-secret", type="SIDEREAL", ra=197.9, dec=-23.0, permissions="PRIVATE")
        assign_target_permissions(secret, ["Secret"])
        markup = Target.objects.create(name=MARKUP, type="SIDEREAL", ra=196.9, dec=-23.9, permissions="PUBLIC")
        ingest_notice(parse_avro(build_notice(gw170817_skymap())))  # ranks the three, on commit
        ingest_transient_notice(parse_notice(build_grb_notice(), "fermi-gbm"))  # linked to the GW event
    event = GWEvent.objects.get(superevent_id="MS170817a")
    grb = TransientEvent.objects.get(source="fermi-gbm")

    # derived alerts (classifications) merged into the Targets by name; the rules are not run (no commit)
    for target, score in ((public, 0.91), (secret, 0.42), (markup, 0.77)):
        for created, bump in (("2017-08-18T06:00:00Z", 0.0), ("2017-08-18T12:00:00Z", 0.01)):
            ingest_derived_alert(make_alert(candidate=candidate(target.name, target.ra, target.dec),
                                            kilonova_score=score + bump, created=created,
                                            gw_event="MS170817a"))  # fmt: skip

    record = ObservationRecord.objects.create(target=secret, facility="Simulated", observation_id="sim-1",
                                              status="PENDING", parameters={})  # fmt: skip
    EventObservation.objects.create(event=event, observation_record=record)
    now = datetime(2017, 8, 18, tzinfo=UTC)
    SimulatedObservation.objects.create(
        observation_id="sim-1", target_id=secret.pk, submitted=now, scheduled_at=now + timedelta(hours=1),
        completed_at=now + timedelta(hours=2),
    )  # fmt: skip

    # the broker: an archived GCN notice, a quarantined one, a classified candidate, the decider's state
    grb_topic = "gcn.notices.fermi.gbm"
    Ingestor({grb_topic: None}).ingest(
        [Envelope(topic=grb_topic, payload=json.dumps(build_grb_notice()).encode(), partition=0, offset=7)]
    )
    Ingestor({"igwn.gwalert": _broken_handler}, max_attempts=1).ingest(
        [Envelope(topic="igwn.gwalert", payload=b'{"alert_type": "PRELIMINARY"}', partition=1, offset=3)]
    )
    for name, ra, dec in ((MARKUP, 196.9, -23.9), ("AT-secret", 197.9, -23.0)):
        for mjd, mag in ((57983.0, 17.5), (57984.0, 18.2), (57985.0, 18.9)):
            point = PhotometryMessage.create(
                object_name=name, ra=ra, dec=dec, mjd=mjd, band="r", magnitude=mag, magnitude_error=0.05,
                source="test", telescope="Blanco", instrument="DECam", gw_event="MS170817a",
            )  # fmt: skip
            broker_candidate, _ = ingest_point(point, message_id=uuid.uuid4())
        score_candidate(broker_candidate.pk)
    SnewsDeciderState.objects.create(name="default", state={"lanes": {}}, messages=3)
    # the insider logs in through an OIDC provider too
    from tom_mma.models import OIDCIdentity

    OIDCIdentity.objects.create(user=insider, issuer="https://idp.example.org/realms/tom", subject="5b1e-insider")
    return Rows(
        event=event, public=public, secret=secret, markup=markup, insider=insider, outsider=outsider, staff=staff,
        grb=grb, archived=ArchivedAlert.objects.get(topic=grb_topic),
        broken=ArchivedAlert.objects.get(topic="igwn.gwalert"), broker_candidate=Candidate.objects.get(name=MARKUP),
    )  # fmt: skip
