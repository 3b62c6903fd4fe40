"""The magnitude system of derived-alert photometry: carried from the source point to the TOM's datum unit."""

from __future__ import annotations

import json

import pytest
from tom_dataproducts.models import PhotometryReducedDatum

from tests.test_derived_factories import AT2017GFO_POINTS, alert_dict
from tom_mma.derived import ingest_derived_alert
from tom_mma.schemas.derived_alert import DerivedAlert


def test_system_is_optional_defaults_to_ab_and_is_validated():
    without = alert_dict(photometry=[dict(AT2017GFO_POINTS[0])])
    assert "system" not in without["photometry"][0]
    assert DerivedAlert.from_dict(without).photometry[0].system == "AB"
    vega = alert_dict(photometry=[{**AT2017GFO_POINTS[0], "system": "Vega"}])
    alert = DerivedAlert.from_dict(vega)
    assert alert.photometry[0].system == "Vega"
    assert DerivedAlert.from_json(alert.to_json()) == alert
    with pytest.raises(ValueError, match="system must be one of AB, Vega"):
        DerivedAlert.from_dict(alert_dict(photometry=[{**AT2017GFO_POINTS[0], "system": "ST"}]))


@pytest.mark.django_db
def test_the_tom_labels_each_datum_with_its_system(django_capture_on_commit_callbacks):
    points = [{**AT2017GFO_POINTS[0], "system": "AB"}, {**AT2017GFO_POINTS[2], "system": "Vega"}]
    with django_capture_on_commit_callbacks(execute=True):
        ingest_derived_alert(DerivedAlert.from_dict(alert_dict(photometry=points)))
    units = dict(PhotometryReducedDatum.objects.values_list("bandpass", "unit"))
    assert units == {"i": "AB mag", "U": "Vega mag"}


@pytest.mark.django_db
def test_the_broker_carries_the_source_points_system(settings):
    from tom_mma_broker.classification import score_candidate
    from tom_mma_broker.models import Candidate, CandidatePoint, OutboxMessage

    settings.TOM_MMA_BROKER = {**settings.TOM_MMA_BROKER, "PUBLISH_ENABLED": True, "PUBLISH_FLOOR": 0.0}
    candidate = Candidate.objects.create(name="AT-vega", ra=1.0, dec=2.0)
    for i, (band, system) in enumerate([("g", "AB"), ("r", "AB"), ("R", "Vega")]):
        CandidatePoint.objects.create(candidate=candidate, point_id=f"v{i}", mjd=60000.0 + i, band=band,
                                      magnitude=19.0 + i, magnitude_error=0.05, system=system)  # fmt: skip
    classification = score_candidate(candidate.pk)
    payload = json.loads(bytes(OutboxMessage.objects.get(classification=classification).payload))
    assert {p["band"]: p["system"] for p in payload["photometry"]} == {"g": "AB", "r": "AB", "R": "Vega"}
