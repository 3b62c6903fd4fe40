"""Batched scoring of the broker's candidates (``score_candidates``, the ``classify_candidates`` task).

Each candidate of a batch gets the classification (and derived alert) that ``score_candidate`` gives it alone,
with a number of queries that does not grow with the batch.
"""

from __future__ import annotations

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tom_mma_broker.classification import score_candidate, score_candidates
from tom_mma_broker.classifier import synthetic
from tom_mma_broker.models import Candidate, CandidatePoint, Classification, OutboxMessage
from tom_mma_broker.tasks import classify_candidates

pytestmark = pytest.mark.django_db


@pytest.fixture
def publishing(settings):
    settings.TOM_MMA_BROKER = {**settings.TOM_MMA_BROKER, "PUBLISH_ENABLED": True, "PUBLISH_FLOOR": 0.0}


def candidates(n: int, seed: int = 3, prefix: str = "c") -> list[Candidate]:
    """``n`` candidates with seeded synthetic light curves of every kind (and one with upper limits alone)."""
    rng = np.random.default_rng(seed)
    kinds = (synthetic.KILONOVA, *synthetic.NEGATIVE_KINDS)
    made = []
    for i in range(n):
        cand = Candidate.objects.create(name=f"{prefix}-{i}", ra=float(i), dec=0.0)
        full: list = []
        while not any(not o.upper_limit for o in full):  # a light curve the survey saw
            full = synthetic.make_light_curve(kinds[i % len(kinds)], rng)
        first = next(k for k, o in enumerate(full) if not o.upper_limit)
        observations = full[max(0, first - 2) : first + 10]  # limits before, then detections and limits
        if i == 1:
            observations = [o for o in full if o.upper_limit][:5]
        CandidatePoint.objects.bulk_create(
            CandidatePoint(candidate=cand, point_id=f"{prefix}-{i}-{k}", mjd=o.mjd, band=o.band,
                           magnitude=o.magnitude, magnitude_error=o.magnitude_error, upper_limit=o.upper_limit)
            for k, o in enumerate(observations)
        )  # fmt: skip
        made.append(cand)
    return made


def _as_rows(queryset) -> dict[str, tuple]:
    return {
        row.candidate.name: (row.input_digest, row.n_points, row.latest_point_mjd, row.model_version, row.features)
        for row in queryset
    }


def test_a_batch_gives_each_candidate_its_own_classification_and_alert(publishing):
    batch = candidates(20, prefix="batch")
    alone = candidates(20, prefix="alone")  # the same light curves, other names
    made = score_candidates([c.pk for c in batch] + [batch[0].pk, 10**9])  # a repeat and a candidate gone
    for cand in alone:
        score_candidate(cand.pk)
    assert len(made) == 19  # the one with upper limits alone is not classified
    assert not Classification.objects.filter(candidate=batch[1]).exists()
    batched = Classification.objects.filter(candidate__in=batch).select_related("candidate")
    single = Classification.objects.filter(candidate__in=alone).select_related("candidate")
    by_name = {row.candidate.name.removeprefix("batch-"): row for row in batched}
    assert len(by_name) == 19
    for row in single:
        twin = by_name[row.candidate.name.removeprefix("alone-")]
        assert twin.score == pytest.approx(row.score, rel=1e-9, abs=1e-12)
        assert twin.n_points == row.n_points and twin.latest_point_mjd == row.latest_point_mjd
        assert twin.features.keys() == row.features.keys()
        for name, value in row.features.items():
            assert (value is None) == (twin.features[name] is None)
            assert value is None or twin.features[name] == pytest.approx(value, rel=1e-9, abs=1e-12)
    # every classification has its derived alert (floor 0), queued in the same transaction
    assert OutboxMessage.objects.filter(classification__in=batched).count() == 19
    # idempotent: nothing new the second time, in a batch or alone
    assert score_candidates([c.pk for c in batch]) == [] and score_candidate(batch[0].pk) is None
    assert Classification.objects.count() == 38


def test_the_queries_do_not_grow_with_the_batch(settings):
    settings.TOM_MMA_BROKER = {**settings.TOM_MMA_BROKER, "PUBLISH_ENABLED": False}
    counts = []
    for n, prefix in ((4, "small"), (40, "large")):
        pks = [c.pk for c in candidates(n, prefix=prefix)]
        with CaptureQueriesContext(connection) as queries:
            made = score_candidates(pks)
        assert len(made) == n - 1
        counts.append(len(queries))
    assert counts[0] == counts[1] <= 8, counts  # candidates, points, existing rows, one insert (+ savepoint)


def test_the_task_scores_a_batch_eagerly(settings):
    settings.TOM_MMA_BROKER = {**settings.TOM_MMA_BROKER, "PUBLISH_ENABLED": False}
    pks = [c.pk for c in candidates(6)]
    assert classify_candidates.apply(args=[pks]).get() == 5
    assert classify_candidates.apply(args=[pks]).get() == 0
    assert Classification.objects.count() == 5


@pytest.mark.django_db(transaction=True)
def test_collect_on_commit_flushes_each_transactions_items_once():
    from django.db import transaction

    from tom_mma.deferred import collect_on_commit

    flushed: list[list] = []
    with transaction.atomic():
        for item in (3, 1, 3, 2):
            collect_on_commit("k", item, flushed.append)
        assert flushed == []  # nothing before the commit
    assert flushed == [[3, 1, 2]]  # once, in the order first added, without repeats
    flushed.clear()
    with transaction.atomic():
        try:
            with transaction.atomic():
                collect_on_commit("k", 7, flushed.append)  # registers in a savepoint that rolls back
                raise RuntimeError
        except RuntimeError:
            pass
        collect_on_commit("k", 8, flushed.append)
        collect_on_commit("other", 9, flushed.append)
    assert flushed == [[8], [9]]  # 7 went with its savepoint; one flush per key
    flushed.clear()
    collect_on_commit("k", 5, flushed.append)  # outside a transaction: at once
    assert flushed == [[5]]
