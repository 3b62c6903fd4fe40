"""Source photometry a run at a time: the photometry handler's ``batch`` through the ingest path.

Through the ingest path the stream and ``replayalerts`` share (:class:`tom_mma_broker.ingest.Ingestor`), with
real AT2017gfo points; the database is the suite's (both legs).
"""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.test_pipeline_tasks import envelopes, photometry
from tom_mma_broker.handlers import photometry_handler
from tom_mma_broker.ingest import Ingestor, Outcome
from tom_mma_broker.models import ArchivedAlert, Candidate, CandidatePoint, QuarantinedAlert

pytestmark = pytest.mark.django_db

TOPIC = "test.photometry-batch"


def candidate_queries(ingestor: Ingestor, points: list[dict], tag: str) -> int:
    """How many queries of the candidates' table a batch of ``points`` (new point ids) takes."""
    points = [dict(p, point_id=f"{p['point_id']}-{tag}") for p in points]
    with CaptureQueriesContext(connection) as queries:
        results = ingestor.ingest(envelopes(TOPIC, points))
    assert [r.outcome for r in results] == [Outcome.HANDLED] * len(points)
    table = Candidate._meta.db_table
    return sum(q["sql"].startswith("SELECT") and f'FROM "{table}"' in q["sql"] for q in queries.captured_queries)


def test_a_run_looks_its_candidates_up_once_however_many_points_it_has():
    ingestor = Ingestor({TOPIC: photometry_handler})
    ingestor.ingest(envelopes(TOPIC, photometry(1) + photometry(1, object_name="AT-other")))  # the candidates
    few = candidate_queries(ingestor, photometry(2) + photometry(2, object_name="AT-other"), "few")
    many = candidate_queries(ingestor, photometry(8) + photometry(8, object_name="AT-other"), "many")
    assert few == many  # per batch, not per message
    assert CandidatePoint.objects.count() == 2 + 4 + 16


def test_a_bad_point_in_a_run_is_quarantined_with_its_reason_and_the_others_stored():
    points = photometry(5)
    batch = envelopes(TOPIC, points)
    bad = dict(points[2])
    del bad["magnitude"]
    batch[2].payload = json.dumps(bad).encode()
    results = Ingestor({TOPIC: photometry_handler}).ingest(batch)
    assert [r.outcome for r in results] == [Outcome.HANDLED] * 2 + [Outcome.QUARANTINED] + [Outcome.HANDLED] * 2
    assert "magnitude" in results[2].reason
    assert QuarantinedAlert.objects.get().attempts == 1  # permanent: not retried
    assert ArchivedAlert.objects.count() == 5
    assert set(CandidatePoint.objects.values_list("point_id", flat=True)) == {
        p["point_id"] for i, p in enumerate(points) if i != 2
    }
    # a replay of the batch adds nothing
    assert {r.outcome for r in Ingestor({TOPIC: photometry_handler}).ingest(batch)} == {Outcome.DUPLICATE}
    assert CandidatePoint.objects.count() == 4
