"""GW ingest integrity: notices that differ delivered out of order, a corrupt sky map inside a valid notice
through ``replayalerts``, a failure inside the ingest transaction, JSON notices through ``replayalerts``.

The synthetic notices are copies of the real MS181101ab samples with a few fields changed, built here.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import fastavro
import pytest
from django.core.management import call_command
from hop.models import AvroBlob

from tests.conftest import stream_config
from tom_mma.gw import events
from tom_mma.handlers.lvk import igwn_gwalert_handler
from tom_mma.models import EventNotice, EventSkyMap, GWEvent
from tom_mma_broker.models import QuarantinedAlert

pytestmark = pytest.mark.django_db

DATA = Path(__file__).parent / "data" / "lvk"
AVRO_HANDLER = "tom_mma.handlers.lvk.igwn_gwalert_handler"
JSON_HANDLER = "tom_mma.handlers.lvk.gcn_igwn_gwalert_handler"


@pytest.fixture(autouse=True)
def accept_mock(settings):
    settings.TOM_MMA = {"ACCEPT_MOCK_EVENTS": True}


def read_avro(name: str) -> tuple[dict, dict]:
    """The record of a real sample and the writer schema it was written with."""
    with open(DATA / f"MS181101ab-{name}.avro", "rb") as f:
        reader = fastavro.reader(f)
        return next(reader), reader.writer_schema


def avro_file(record: dict, schema: dict) -> bytes:
    out = io.BytesIO()
    fastavro.writer(out, fastavro.parse_schema(schema), [record])
    return out.getvalue()


def nothing_stored() -> bool:
    return not (GWEvent.objects.exists() or EventNotice.objects.exists() or EventSkyMap.objects.exists())


# -- (a) notices that differ, out of order ------------------------------------------------------------------
def synthetic(minute: int, far: float, bns: float) -> dict:
    """The real preliminary notice, created ``minute`` minutes after it, with its own FAR and classification."""
    record, _ = read_avro("preliminary")
    return dict(
        record,
        alert_type="UPDATE",
        time_created=f"2018-11-01T22:{22 + minute:02d}:39Z",
        event=dict(
            record["event"], far=far, classification={"BNS": bns, "NSBH": 0.0, "BBH": 0.0, "Terrestrial": 1 - bns}
        ),
    )


def test_the_current_figures_are_those_of_the_latest_notice_whatever_the_arrival_order(
    django_capture_on_commit_callbacks,
):
    early, middle, latest = synthetic(1, 1e-9, 0.2), synthetic(5, 1e-11, 0.5), synthetic(9, 3e-14, 0.9)
    with django_capture_on_commit_callbacks(execute=True):
        for record in (latest, early, middle):  # the latest first, then older ones
            assert igwn_gwalert_handler(AvroBlob(content=record)).created
    event = GWEvent.objects.get(superevent_id="MS181101ab")
    assert (event.far, event.classification["BNS"]) == (3e-14, 0.9)
    assert event.latest_notice_at.isoformat() == "2018-11-01T22:31:39+00:00"
    # a redelivered older notice changes nothing
    before = GWEvent.objects.filter(pk=event.pk).values().get()
    with django_capture_on_commit_callbacks(execute=True):
        assert not igwn_gwalert_handler(AvroBlob(content=early)).created
    after = GWEvent.objects.filter(pk=event.pk).values().get()
    assert after == before
    assert EventNotice.objects.count() == 3


# -- (b) a corrupt sky map in a valid notice, through replayalerts -------------------------------------------
def test_a_truncated_sky_map_in_a_valid_avro_notice_is_quarantined_by_replayalerts(tmp_path, settings):
    settings.ALERT_STREAMS = [stream_config("igwn.gwalert", handler=AVRO_HANDLER)]
    record, schema = read_avro("preliminary")
    cut = dict(record, event=dict(record["event"], skymap=record["event"]["skymap"][:300_000]))
    payload = avro_file(cut, schema)
    assert next(fastavro.reader(io.BytesIO(payload)))["superevent_id"] == "MS181101ab"  # a valid Avro file
    folder = tmp_path / "notices"
    folder.mkdir()
    (folder / "cut-skymap.avro").write_bytes(payload)

    out = io.StringIO()
    call_command("replayalerts", str(folder), "--topic", "igwn.gwalert", stdout=out)
    assert out.getvalue().splitlines()[-1] == "1 messages: 0 handled, 0 archived, 0 duplicate, 1 quarantined"
    [quarantined] = QuarantinedAlert.objects.all()
    assert "skymap" in quarantined.reason and "truncated" in quarantined.reason
    assert nothing_stored()


# -- (c) a failure inside the ingest transaction ------------------------------------------------------------
def test_a_failure_inside_the_ingest_transaction_stores_nothing_half_way(monkeypatch):
    # Fault injection: the last step inside ingest_notice's transaction (recomputing the event) fails after
    # the event, its sky map and the notice rows were written. A database error there would do the same.
    def fail(event):
        assert EventNotice.objects.filter(event=event).exists()  # the rows were written: now they must go
        raise RuntimeError("injected failure")

    monkeypatch.setattr(events, "_refresh_event", fail)
    record, _ = read_avro("ext-update")
    with pytest.raises(RuntimeError, match="injected failure"):
        igwn_gwalert_handler(AvroBlob(content=record))
    assert nothing_stored()
    monkeypatch.undo()
    assert igwn_gwalert_handler(AvroBlob(content=record)).created  # and the same notice is then taken whole
    assert EventSkyMap.objects.count() == 2 and EventNotice.objects.count() == 1


# -- (d) JSON notices through replayalerts ------------------------------------------------------------------
def test_json_notices_through_replayalerts_out_of_order_twice(tmp_path, settings):
    topic = "gcn.notices.igwn.gwalert"
    settings.ALERT_STREAMS = [stream_config(topic, handler=JSON_HANDLER)]
    folder = tmp_path / "gcn"
    folder.mkdir()
    (folder / "0-retraction.json").write_bytes((DATA / "MS181101ab-retraction.json").read_bytes())
    (folder / "1-preliminary.json").write_bytes((DATA / "MS181101ab-preliminary.json").read_bytes())
    doc = json.loads((DATA / "MS181101ab-preliminary.json").read_text())
    doc["event"]["skymap"] = doc["event"]["skymap"][:-3]  # base64 cut short
    (folder / "2-cut.json").write_text(json.dumps(doc))

    out = io.StringIO()
    call_command("replayalerts", str(folder), "--topic", topic, stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[-1] == "3 messages: 2 handled, 0 archived, 0 duplicate, 1 quarantined"
    assert any(line.startswith("quarantined") and "2-cut.json" in line and "base64" in line for line in lines)
    event = GWEvent.objects.get(superevent_id="MS181101ab")
    assert event.state == GWEvent.State.RETRACTED and not event.never_live
    assert list(event.notices.values_list("alert_type", "transport")) == [
        ("PRELIMINARY", "json"),
        ("RETRACTION", "json"),
    ]
    again = io.StringIO()
    call_command("replayalerts", str(folder), "--topic", topic, stdout=again)
    assert again.getvalue().splitlines()[-1] == "3 messages: 0 handled, 0 archived, 3 duplicate, 0 quarantined"
    assert EventNotice.objects.count() == 2
