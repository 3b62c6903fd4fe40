"""The ``MMA-Fink`` data service: Fink's REST API in tomtoolkit 3's Data Services menu.

Searches as tom_fink offers them (an object's alerts, a cone, the latest alerts of a Fink class within a
date range, a solar-system object), asked of ``TOM_MMA['FINK_API_URL']`` by
:func:`tom_mma.optical.fink_api.query_fink` with ``TOM_MMA['FINK_API_TIMEOUT_S']``. One result per object.
"Create Targets" gives each object's alerts (for a cone, class or solar-system search, which give the latest
alerts only, the object's whole history asked of the API then) to the optical stream's own service
(:func:`tom_mma.optical.service.ingest_optical_alert`): the same Target, photometry, Fink extras and GW
placement as if the alerts had come on Fink's stream. A failure of the API is shown on the result page.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from crispy_forms.layout import Column, Fieldset, Layout, Row
from django import forms
from django.contrib import messages
from django.db import transaction
from tom_dataservices.dataservices import DataService
from tom_dataservices.forms import BaseQueryForm

from tom_mma.derived import mjd_to_datetime
from tom_mma.formlayout import cone_fieldset
from tom_mma.optical.fink_api import (
    MAX_RADIUS_ARCSEC,
    QUERY_KINDS,
    FinkApiError,
    FinkQuery,
    alerts_from_rows,
    query_fink,
)
from tom_mma.optical.packets import AlertFormatError
from tom_mma.optical.service import ingest_optical_alert

from .common import after_target_made, service_error

__all__ = ["FinkQueryForm", "FinkDataService"]

#: The fields each kind of search needs.
REQUIRED = {"object": ("object_id",), "cone": ("ra", "dec", "radius_arcsec"), "class": ("fink_class",), "sso": ("sso",)}
PARAMETERS = (
    "query_kind", "object_id", "ra", "dec", "radius_arcsec", "fink_class", "n", "startdate", "stopdate", "sso",
)  # fmt: skip


def _utc_text(value: datetime) -> str:
    # Fink reads ISO dates in UTC without an offset
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat(sep=" ", timespec="seconds")


class FinkQueryForm(BaseQueryForm):
    """One search of Fink's API; the fields of the chosen kind are required."""

    query_kind = forms.ChoiceField(choices=list(QUERY_KINDS.items()), initial="object", label="Search")
    object_id = forms.CharField(required=False, max_length=64, label="ZTF object id", help_text="e.g. ZTF18abvcdqu")
    ra = forms.FloatField(required=False, min_value=0.0, max_value=360.0, label="RA (deg)")
    dec = forms.FloatField(required=False, min_value=-90.0, max_value=90.0, label="Dec (deg)")
    radius_arcsec = forms.FloatField(
        required=False, min_value=0.0, max_value=MAX_RADIUS_ARCSEC, label="Radius (arcsec)", help_text="at most 18000"
    )
    fink_class = forms.CharField(
        required=False,
        max_length=100,
        label="Fink class",
        help_text="e.g. Early SN Ia candidate, Kilonova candidate, (SIMBAD) RRLyr",
    )
    n = forms.IntegerField(required=False, min_value=1, max_value=1000, initial=100, label="At most (alerts)")
    startdate = forms.DateTimeField(required=False, label="From (UTC)", help_text="class or cone search")
    stopdate = forms.DateTimeField(required=False, label="To (UTC)")
    sso = forms.CharField(
        required=False, max_length=64, label="Solar-system object", help_text="IAU number or designation, e.g. 8467"
    )

    def get_layout(self) -> Layout:
        """The kind of search, then the fields of each kind."""
        return Layout(
            "data_service",
            "query_kind",
            "object_id",
            cone_fieldset(),
            Row(Column("fink_class", css_class="col"), Column("n", css_class="col")),
            Fieldset("Date range", Row(Column("startdate", css_class="col"), Column("stopdate", css_class="col"))),
            "sso",
        )

    def clean(self) -> dict[str, Any]:
        """The chosen kind's fields present, dates only where Fink takes them; the parameters JSON-safe."""
        cleaned = super().clean()
        kind = cleaned.get("query_kind")
        for key in ("object_id", "fink_class", "sso"):
            cleaned[key] = (cleaned.get(key) or "").strip()
        for key in REQUIRED.get(kind, ()):
            if cleaned.get(key) in (None, ""):
                self.add_error(key, f"needed for a search by {QUERY_KINDS[kind].lower()}")
        start, stop = cleaned.get("startdate"), cleaned.get("stopdate")
        if (start or stop) and kind not in ("class", "cone"):
            self.add_error("startdate", "Fink's API takes a date range with a class or a cone search only")
        if start is not None and stop is not None and start > stop:
            self.add_error("stopdate", "must not be before the start")
        if cleaned.get("n") is None:
            cleaned["n"] = 100
        # tom_dataservices keeps the parameters in the session and in a saved query, both JSON: times as text
        for key in ("startdate", "stopdate"):
            if isinstance(cleaned.get(key), datetime):
                cleaned[key] = _utc_text(cleaned[key])
        return cleaned


def _query(parameters: dict[str, Any]) -> FinkQuery:
    return FinkQuery(
        kind=parameters.get("query_kind") or "object",
        object_id=parameters.get("object_id") or "",
        ra=parameters.get("ra"),
        dec=parameters.get("dec"),
        radius_arcsec=parameters.get("radius_arcsec"),
        fink_class=parameters.get("fink_class") or "",
        n=int(parameters.get("n") or 100),
        startdate=parameters.get("startdate") or "",
        stopdate=parameters.get("stopdate") or "",
        sso=parameters.get("sso") or "",
    )


class FinkDataService(DataService):
    """Fink's REST API (ZTF): alerts by object, cone, class and dates, solar-system object."""

    name = "MMA-Fink"
    verbose_name = "Fink broker's REST API (ZTF), through tom-mma's optical alert service"
    info_url = "https://fink-broker.org/"
    query_results_table = "tom_mma/dataservices/fink_results_table.html"

    @classmethod
    def urls(cls, **kwargs: Any) -> dict:
        """The API's URL as configured (``TOM_MMA['FINK_API_URL']``) and Fink's home page."""
        from tom_mma.conf import mma_settings

        return {"base_url": mma_settings.FINK_API_URL, "info_url": cls.info_url}

    @classmethod
    def get_form_class(cls) -> type[FinkQueryForm]:
        """The query form."""
        return FinkQueryForm

    def build_query_parameters(self, parameters: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """The query's own parameters out of the form's data (JSON-safe)."""
        self.query_parameters = {key: parameters.get(key) for key in PARAMETERS}
        return self.query_parameters

    def query_service(self, query_parameters: dict[str, Any], **kwargs: Any) -> list[dict[str, Any]]:
        """Fink's rows for the query.

        Raises
        ------
        QueryServiceError
            Whatever went wrong with the API, in words (tom_dataservices shows it on the result page).
        """
        try:
            self.query_results = query_fink(_query(query_parameters))
        except FinkApiError as exc:
            raise service_error(str(exc)) from None
        return self.query_results

    def query_targets(self, query_parameters: dict[str, Any], **kwargs: Any) -> list[dict[str, Any]]:
        """One row per object: its latest detection, its alerts' count, Fink's class; its rows for creation."""
        rows = self.query_service(query_parameters)
        try:
            alerts = alerts_from_rows(rows)
        except FinkApiError as exc:
            raise service_error(str(exc)) from None
        results = []
        for alert in alerts:
            latest = next((p for p in alert.points if p.kind == "detection"), None)
            crossmatches = dict(alert.crossmatches)
            results.append({
                "name": alert.name,
                "ra": alert.ra,
                "dec": alert.dec,
                "mag": latest.magnitude if latest else None,
                "band": latest.band if latest else "",
                "last_alert": mjd_to_datetime(alert.mjd).strftime("%Y-%m-%d %H:%M:%S"),
                "detections": len(alert.detections),
                "fink_class": crossmatches.get("classification") or crossmatches.get("cdsxmatch") or "",
                "rows": [row for row in rows if row.get("i:objectId") == alert.object_id],
                # an object search gives the object's whole history; the others its latest alerts
                "history": query_parameters.get("query_kind") == "object",
            })  # fmt: skip
        return results

    def to_target(self, target_result: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        """The Target of an object, grown from its alerts by the optical stream's service."""
        if not target_result:
            return super().to_target(target_result, **kwargs)  # tom_dataservices' MissingDataException
        request = kwargs.get("request")
        rows = target_result.get("rows") or []
        if not target_result.get("history"):
            # a cone, class or solar-system search gives an object's latest alert: ask for all of them
            try:
                rows = query_fink(FinkQuery(kind="object", object_id=target_result["name"])) or rows
            except FinkApiError as exc:
                if request is not None:
                    messages.warning(request, f"{target_result['name']}: only its latest alert is kept: {exc}")
        try:
            alerts = alerts_from_rows(rows)
            if not alerts:
                return None
            with transaction.atomic():
                result = ingest_optical_alert(alerts[0])
        except (FinkApiError, AlertFormatError) as exc:
            # the view shows no error of to_target itself: say it here, and make no Target
            if request is not None:
                messages.error(request, f"{target_result.get('name', 'The result')}: no Target made: {exc}")
            return None
        after_target_made(result.target, result.created, request)
        return result.target

    def create_reduced_datums_from_query(self, target: Any, data: Any = None, data_type: str | None = None, **kwargs):
        """Nothing more to add: :meth:`to_target` stored the object's photometry."""
        return []
