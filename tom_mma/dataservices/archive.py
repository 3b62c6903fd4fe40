"""The ``MMA-Archive`` data service: this TOM's stored alerts in tomtoolkit 3's Data Services menu.

The form searches derived alerts, optical alerts and GW candidates (:func:`tom_mma.archive.search_archive`)
by object name or id, cone, time range, lowest kilonova score, Fink class and "inside the credible region
of GW event X". "Create Targets" merges each result by name, alias and cone through
:func:`tom_mma.targets.get_or_create_target` and adds a derived alert's photometry.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from crispy_forms.layout import Column, Fieldset, Layout, Row
from django import forms
from tom_dataservices.dataservices import DataService
from tom_dataservices.forms import BaseQueryForm

from tom_mma.archive import KINDS, ArchiveQuery, search_archive
from tom_mma.derived import add_photometry
from tom_mma.formlayout import cone_fieldset
from tom_mma.schemas.derived_alert import AlertPoint
from tom_mma.targets import get_or_create_target

from .common import after_target_made

__all__ = ["ArchiveQueryForm", "ArchiveDataService"]

#: The form's fields that are query parameters (the rest are tom_dataservices' own).
PARAMETERS = (
    "kinds", "name", "ra", "dec", "radius_arcsec", "time_start", "time_end", "score_min", "fink_class",
    "gw_event", "credible_level", "include_retracted",
)  # fmt: skip


class ArchiveQueryForm(BaseQueryForm):
    """Search the stored alerts; every filter is optional, and they combine."""

    kinds = forms.MultipleChoiceField(
        choices=list(KINDS.items()),
        required=False,
        initial=list(KINDS),
        widget=forms.CheckboxSelectMultiple,
        label="Search",
        help_text="none ticked: all three",
    )
    name = forms.CharField(
        required=False, max_length=100, label="Object name or id", help_text="a Target name or alias, an alert id"
    )
    ra = forms.FloatField(required=False, min_value=0.0, max_value=360.0, label="RA (deg)")
    dec = forms.FloatField(required=False, min_value=-90.0, max_value=90.0, label="Dec (deg)")
    radius_arcsec = forms.FloatField(required=False, min_value=0.0, max_value=648000.0, label="Radius (arcsec)")
    time_start = forms.DateTimeField(required=False, label="From (UTC)", help_text="e.g. 2025-05-01 12:00")
    time_end = forms.DateTimeField(required=False, label="To (UTC)")
    score_min = forms.FloatField(required=False, min_value=0.0, max_value=1.0, label="Kilonova score at least")
    fink_class = forms.CharField(
        required=False, max_length=100, label="Fink class", help_text="e.g. Early SN Ia candidate, RRLyr"
    )
    gw_event = forms.CharField(
        required=False, max_length=64, label="Inside the region of GW event", help_text="superevent id"
    )
    credible_level = forms.FloatField(
        required=False, min_value=0.01, max_value=1.0, initial=0.9, label="Credible region", help_text="0.9: 90%"
    )
    include_retracted = forms.BooleanField(required=False, label="Include retracted alerts and events")

    def get_layout(self) -> Layout:
        """The fields in rows: what, where, when, how likely, which GW event."""
        return Layout(
            "data_service",
            Row(Column("kinds", css_class="col"), Column("name", css_class="col")),
            cone_fieldset(),
            Fieldset("Time", Row(Column("time_start", css_class="col"), Column("time_end", css_class="col"))),
            Row(Column("score_min", css_class="col"), Column("fink_class", css_class="col")),
            Fieldset(
                "Gravitational-wave event",
                Row(Column("gw_event", css_class="col"), Column("credible_level", css_class="col")),
            ),
            "include_retracted",
        )

    def clean(self) -> dict[str, Any]:
        """A cone whole or not at all, times in order; the parameters JSON-safe."""
        cleaned = super().clean()
        cone = [cleaned.get(k) for k in ("ra", "dec", "radius_arcsec")]
        if any(v is not None for v in cone) and any(v is None for v in cone):
            self.add_error("radius_arcsec", "a cone needs RA, Dec and a radius")
        start, end = cleaned.get("time_start"), cleaned.get("time_end")
        if start is not None and end is not None and start > end:
            self.add_error("time_end", "must not be before the start")
        for key in ("name", "fink_class", "gw_event"):
            cleaned[key] = (cleaned.get(key) or "").strip()
        if cleaned.get("credible_level") is None:
            cleaned["credible_level"] = 0.9
        # tom_dataservices keeps the parameters in the session and in a saved query, both JSON: times as text
        for key in ("time_start", "time_end"):
            if isinstance(cleaned.get(key), datetime):
                cleaned[key] = cleaned[key].isoformat()
        return cleaned


class ArchiveDataService(DataService):
    """The alerts stored by this TOM: derived alerts, optical alerts, GW candidates."""

    name = "MMA-Archive"
    verbose_name = "tom-mma archive: derived alerts, optical alerts and GW candidates stored by this TOM"
    query_results_table = "tom_mma/dataservices/archive_results_table.html"
    service_notes = "Searches this TOM's database only; results are the Targets you may view."

    @classmethod
    def get_form_class(cls) -> type[ArchiveQueryForm]:
        """The query form."""
        return ArchiveQueryForm

    def build_query_parameters(self, parameters: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """The query's own parameters out of the form's data (JSON-safe), and who asks.

        tom_dataservices' result page reuses the results it cached for the same parameters, whoever ran
        them: the requester's id among the parameters keeps one user's results from another.
        """
        self.query_parameters = {key: parameters.get(key) for key in PARAMETERS}
        self.query_parameters["requested_by"] = getattr(self.user, "pk", None)
        return self.query_parameters

    def query_service(self, query_parameters: dict[str, Any], **kwargs: Any) -> list[dict[str, Any]]:
        """The hits of :func:`tom_mma.archive.search_archive` for the requesting user."""
        self.query_results = search_archive(ArchiveQuery.from_parameters(query_parameters), self.user)
        return self.query_results

    def query_targets(self, query_parameters: dict[str, Any], **kwargs: Any) -> list[dict[str, Any]]:
        """One row per hit; a derived alert carries its photometry (``reduced_datums``)."""
        rows = []
        for hit in self.query_service(query_parameters):
            row = {key: value for key, value in hit.items() if key != "photometry"}
            if hit.get("photometry"):
                row["reduced_datums"] = {"photometry": hit["photometry"], "alert_id": hit.get("alert_id", "")}
            rows.append(row)
        return rows

    def to_target(self, target_result: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        """The Target of a result: merged by name, alias and cone, or created (with the TOM's groups)."""
        if not target_result:
            return super().to_target(target_result, **kwargs)  # tom_dataservices' MissingDataException
        target, created = get_or_create_target(
            target_result["name"],
            float(target_result["ra"]),
            float(target_result["dec"]),
            aliases=target_result.get("aliases") or [],
            source=f"archive query ({target_result.get('kind', '')})",
        )
        after_target_made(target, created, kwargs.get("request"))
        return target

    def to_reduced_datums(self, target: Any, data_results: dict | None = None, **kwargs: Any) -> list:
        """A derived alert's photometry onto the Target (points it has already are skipped)."""
        if data_results and data_results.get("photometry"):
            points = [AlertPoint.from_dict(point) for point in data_results["photometry"]]
            add_photometry(target, points, alert_id=str(data_results.get("alert_id") or ""))
            return []
        return super().to_reduced_datums(target, data_results, **kwargs)

    def create_reduced_datums_from_query(self, target: Any, data: Any = None, data_type: str | None = None, **kwargs):
        """Nothing to fetch again: the archive's results carry what they have."""
        return []
