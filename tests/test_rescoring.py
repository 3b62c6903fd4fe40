"""Rescoring after a new classifier artifact (``rescorecandidates``) and the score history per model version."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from tom_mma_broker.classifier import load_model
from tom_mma_broker.models import Candidate, CandidatePoint, Classification
from tom_mma_broker.rescoring import score_history, stale_candidates

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_publishing(settings):
    settings.TOM_MMA_BROKER = {**settings.TOM_MMA_BROKER, "PUBLISH_ENABLED": False}


def _candidate(name: str, bands: list[str]) -> Candidate:
    cand = Candidate.objects.create(name=name, ra=1.0, dec=2.0)
    for i, band in enumerate(bands):
        CandidatePoint.objects.create(candidate=cand, point_id=f"{name}-{i}", mjd=60000.0 + i, band=band,
                                      magnitude=19.0 + 0.5 * i, magnitude_error=0.05, upper_limit=False)  # fmt: skip
    return cand


def test_rescoring_adds_the_new_version_and_keeps_the_old_as_history():
    version = load_model().version
    old = _candidate("old", ["g", "r", "g"])
    Classification.objects.create(candidate=old, model_version="kilonova-v1+1f54d2e71e7f", input_digest="x",
                                  score=0.62, features={}, n_points=3, latest_point_mjd=60002.0)  # fmt: skip
    new = _candidate("new", ["ztfr"])
    uv_only = _candidate("uv", ["UVW1"])  # nothing the classifier can use: skipped, every time
    assert list(stale_candidates()) == [old, new, uv_only]

    out = io.StringIO()
    call_command("rescorecandidates", stdout=out)
    text = out.getvalue()
    assert f"3 candidates to score with {version}" in text and "3/3" in text
    assert "2 classified, 1 skipped" in text
    history = score_history(old)
    assert set(history) == {"kilonova-v1+1f54d2e71e7f", version}
    assert history["kilonova-v1+1f54d2e71e7f"] == [(60002.0, 0.62, 3)]
    assert len(history[version]) == 1 and history[version][0][2] == 3
    # a second run has nothing new to do for the scored ones
    out = io.StringIO()
    call_command("rescorecandidates", "--no-progress", stdout=out)
    assert "1 candidates to score" in out.getvalue() and "0 classified, 1 skipped" in out.getvalue()
    assert Classification.objects.filter(model_version=version).count() == 2
