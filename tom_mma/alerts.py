"""Broker class for ``TOM_ALERT_CLASSES``: search the derived alerts this TOM has received.

Add ``"tom_mma.alerts.DerivedAlertBroker"`` to ``TOM_ALERT_CLASSES`` (``tom_alerts`` must be in
``INSTALLED_APPS``; check ``tom_mma.E040``). The query form searches the archive in the database
(:class:`tom_mma.models.DerivedAlertRecord`) by score range, time window (received, or time of the
latest photometric point), GW event and cone; it never re-reads a Kafka topic. "Create target" from a
result merges by name, alias and cone through :func:`tom_mma.targets.get_or_create_target`, and adds the
alert's photometry. The search itself is :func:`tom_mma.archive.search_derived_alerts`, which the
tomtoolkit 3 Data Service of the archive (:mod:`tom_mma.dataservices.archive`) shares.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from crispy_forms.layout import Column, Fieldset, Layout, Row
from django import forms
from django.urls import NoReverseMatch, reverse
from django.utils.dateparse import parse_datetime
from tom_alerts.alerts import GenericAlert, GenericBroker, GenericQueryForm

from tom_mma.archive import MAX_RESULTS, derived_alert_dict, search_derived_alerts
from tom_mma.derived import add_photometry, mjd_to_datetime
from tom_mma.formlayout import cone_fieldset
from tom_mma.models import DerivedAlertRecord
from tom_mma.schemas.derived_alert import DerivedAlert
from tom_mma.targets import get_or_create_target

__all__ = [
    "DerivedAlertQueryForm",
    "DerivedAlertBroker",
    "DerivedGenericAlert",
    "MAX_RESULTS",
    "search_derived_alerts",
]

logger = logging.getLogger(__name__)


class DerivedAlertQueryForm(GenericQueryForm):
    """Search derived alerts by score range, time window, GW event and cone."""

    score_min = forms.FloatField(required=False, min_value=0.0, max_value=1.0, label="Kilonova score from")
    score_max = forms.FloatField(required=False, min_value=0.0, max_value=1.0, label="to")
    time_field = forms.ChoiceField(
        choices=[("received", "Received by this TOM"), ("latest_point", "Time of the latest photometric point")],
        initial="received",
        label="Time window on",
    )
    time_start = forms.DateTimeField(required=False, label="From (UTC)", help_text="e.g. 2025-05-01 12:00")
    time_end = forms.DateTimeField(required=False, label="To (UTC)")
    gw_event = forms.CharField(required=False, max_length=64, label="GW event", help_text="superevent id")
    ra = forms.FloatField(required=False, min_value=0.0, max_value=360.0, label="RA (deg)")
    dec = forms.FloatField(required=False, min_value=-90.0, max_value=90.0, label="Dec (deg)")
    radius_arcsec = forms.FloatField(required=False, min_value=0.0, max_value=648000.0, label="Radius (arcsec)")
    include_retracted = forms.BooleanField(required=False, label="Include retracted alerts")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.helper.layout = Layout(
            self.common_layout,
            Fieldset(
                "Kilonova score",
                Row(Column("score_min", css_class="col"), Column("score_max", css_class="col")),
            ),
            Fieldset(
                "Time window",
                Row(
                    Column("time_field", css_class="col"),
                    Column("time_start", css_class="col"),
                    Column("time_end", css_class="col"),
                ),
            ),
            Fieldset("Gravitational-wave event", "gw_event"),
            cone_fieldset(),
            "include_retracted",
        )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        score_min, score_max = cleaned.get("score_min"), cleaned.get("score_max")
        if score_min is not None and score_max is not None and score_min > score_max:
            self.add_error("score_max", "must not be below the lower bound")
        start, end = cleaned.get("time_start"), cleaned.get("time_end")
        if start is not None and end is not None and start > end:
            self.add_error("time_end", "must not be before the start")
        cone = [cleaned.get(k) for k in ("ra", "dec", "radius_arcsec")]
        if any(v is not None for v in cone) and any(v is None for v in cone):
            self.add_error("radius_arcsec", "a cone needs RA, Dec and a radius")
        # the parameters are saved as JSON in a BrokerQuery: keep times as ISO text
        for key in ("time_start", "time_end"):
            if isinstance(cleaned.get(key), datetime):
                cleaned[key] = cleaned[key].isoformat()
        if cleaned.get("gw_event"):
            cleaned["gw_event"] = cleaned["gw_event"].strip()
        return cleaned


def _alert_dict(record: DerivedAlertRecord) -> dict[str, Any]:
    """A result as the query page caches it (plain data: it is pickled into the cache)."""
    return derived_alert_dict(record)


@dataclass
class DerivedGenericAlert(GenericAlert):
    """A result row; :meth:`to_target` merges instead of failing on an existing name."""

    gw_event: str = ""
    model_version: str = ""
    latest_point: datetime | None = None
    retracted: bool = False
    aliases: list[str] = field(default_factory=list)

    def to_target(self):
        """The merged Target (saved), no extras and no further aliases, as tom_alerts expects."""
        target, _created = get_or_create_target(
            self.name, self.ra, self.dec, aliases=self.aliases, source="derived-alert query"
        )
        return target, {}, []


class DerivedAlertBroker(GenericBroker):
    """The derived alerts this TOM received from the tom-mma classifier."""

    name = "MMA-Derived"
    form = DerivedAlertQueryForm
    template_name = "tom_mma/derived/query_result.html"
    score_description = "Kilonova score (0 to 1) of the tom-mma classifier; the model version is in its own column."

    def fetch_alerts(self, parameters: dict) -> Iterator[dict[str, Any]]:
        return iter([_alert_dict(record) for record in search_derived_alerts(parameters)])

    def fetch_alert(self, alert_id: str) -> dict[str, Any] | None:
        record = DerivedAlertRecord.objects.filter(alert_id=alert_id).first()
        return _alert_dict(record) if record is not None else None

    def to_generic_alert(self, alert: dict[str, Any]) -> DerivedGenericAlert:
        detections = [p for p in alert.get("photometry", []) if not p.get("upper_limit")]
        latest = max(detections, key=lambda p: p["mjd"]) if detections else None
        url = ""
        if alert.get("target_id"):
            try:
                url = reverse("targets:detail", kwargs={"pk": alert["target_id"]})
            except NoReverseMatch:
                url = ""
        candidate = alert["candidate"]
        return DerivedGenericAlert(
            timestamp=parse_datetime(alert["received"]) if alert.get("received") else None,
            id=alert["alert_id"],
            name=candidate["name"],
            ra=candidate["ra"],
            dec=candidate["dec"],
            mag=latest["magnitude"] if latest else None,
            score=alert["kilonova_score"],
            url=url,
            gw_event=alert.get("gw_event") or "",
            model_version=alert.get("model_version", ""),
            latest_point=mjd_to_datetime(alert["latest_point_mjd"]),
            retracted=bool(alert.get("retracted")),
            aliases=list(candidate.get("aliases", [])),
        )

    def to_target(self, alert: dict[str, Any]):
        """The merged Target of a result (``fetch_and_save_all``), with the alert's photometry."""
        target, _created = get_or_create_target(
            alert["candidate"]["name"],
            alert["candidate"]["ra"],
            alert["candidate"]["dec"],
            aliases=alert["candidate"].get("aliases", []),
            source="derived-alert query",
        )
        self.process_reduced_data(target, alert)
        return target

    def process_reduced_data(self, target, alert: dict[str, Any] | None = None) -> None:
        """Add the alert's photometry to the Target (points it has already are skipped)."""
        if not alert:
            return
        parsed = DerivedAlert.from_dict(alert)  # the extra keys of a cached result are ignored
        add_photometry(target, parsed.photometry, alert_id=parsed.alert_id)
