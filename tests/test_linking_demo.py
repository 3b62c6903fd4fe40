"""The GW170817 demo with GRB 170817A: both replayed through the embedded broker and the stream, then linked."""

from __future__ import annotations

import uuid

import pytest

from tom_mma.models import EventLink
from tom_mma_broker import demo
from tom_mma_broker.embedded import create_topics
from tom_mma_broker.gw170817 import GW_STREAM, PHOTOMETRY_STREAM
from tom_mma_broker.gw170817.replay import GRB_STREAM
from tom_mma_broker.streams import ReliableHopskotchAlertStream

pytestmark = [pytest.mark.kafka, pytest.mark.django_db(transaction=True)]


def test_the_demo_replay_links_gw170817_and_grb170817a(kafka_broker, settings):
    suffix = uuid.uuid4().hex[:8]
    topics = {GW_STREAM: f"gw.{suffix}", GRB_STREAM: f"grb.{suffix}", PHOTOMETRY_STREAM: f"phot.{suffix}"}
    create_topics(kafka_broker.bootstrap, topics.values())
    settings.TOM_MMA = {"ACCEPT_MOCK_EVENTS": True}
    ids = demo.run_replay(kafka_broker, speed=0, topics=topics)
    assert len(ids) == 28  # 2 LVK notices, the GRB notice, 25 photometry points
    stream = ReliableHopskotchAlertStream(
        URL=kafka_broker.url, GROUP_ID=f"g-{suffix}", START_POSITION="EARLIEST",
        TOPIC_HANDLERS={topics[GW_STREAM]: "tom_mma.handlers.lvk.igwn_gwalert_handler",
                        topics[GRB_STREAM]: "tom_mma.handlers.gcn.fermi_gbm_handler",
                        topics[PHOTOMETRY_STREAM]: None},
    )  # fmt: skip
    stats = stream.listen(max_messages=28, idle_timeout=20)
    assert stats["handled"] == 3 and stats["archived"] == 25
    (link,) = EventLink.objects.select_related("gw_event", "second")
    assert link.gw_event.superevent_id == "MS170817a" and link.second.name == "bn170817529"
    assert link.basis == "time+space" and link.dt == pytest.approx(2.026, abs=1e-3)
    lines = demo.summary().lines()
    assert any(line.startswith("linked: MS170817a and bn170817529 (fermi-gbm), +2.03 s") for line in lines)
