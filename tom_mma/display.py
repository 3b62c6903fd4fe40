"""How values are shown to a person: magnitudes to their precision, and one vocabulary for request statuses.

Every page of ``tom_mma`` (and the example TOM's overrides of tomtoolkit's partials) goes through these
functions, so that a request reads the same on the rules table, the Observations tab and the GW event page,
and a magnitude never shows the nine decimals of a float.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "RequestStatus",
    "format_magnitude",
    "format_magnitude_error",
    "magnitude_decimals",
    "request_status",
    "status_of",
]

_MIN_DECIMALS = 2  # 0.01 mag: what photometry of transients is good to
_MAX_DECIMALS = 4


def magnitude_decimals(error: float | None = None) -> int:
    """Decimals to show a magnitude with: 2 (0.01 mag), more when its error has more digits (at most 4).

    The error is taken to one significant digit; the magnitude is shown to the same decimal place.

    Examples
    --------
    >>> magnitude_decimals(None), magnitude_decimals(0.15), magnitude_decimals(0.05), magnitude_decimals(0.003)
    (2, 2, 2, 3)
    >>> magnitude_decimals(0.00002)
    4
    """
    if error is None or not math.isfinite(error) or error <= 0:
        return _MIN_DECIMALS
    return min(max(-math.floor(math.log10(error)), _MIN_DECIMALS), _MAX_DECIMALS)


def format_magnitude(value: float | None, error: float | None = None) -> str:
    """A magnitude as text, to 0.01 mag or to its error's digits; ``""`` for no value.

    Examples
    --------
    >>> format_magnitude(22.383880105)
    '22.38'
    >>> format_magnitude(22.383880105, 0.004)
    '22.384'
    >>> format_magnitude(None)
    ''
    """
    if value is None:
        return ""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    try:
        error = None if error is None else float(error)
    except (TypeError, ValueError):
        error = None
    return f"{value:.{magnitude_decimals(error)}f}"


def format_magnitude_error(error: float | None) -> str:
    """A magnitude's error to the decimals its magnitude is shown with; ``""`` for none.

    Examples
    --------
    >>> format_magnitude_error(0.0512), format_magnitude_error(0.0034), format_magnitude_error(None)
    ('0.05', '0.003', '')
    """
    try:
        error = float(error)
    except (TypeError, ValueError):
        return ""
    if not math.isfinite(error):
        return ""
    return f"{error:.{magnitude_decimals(error)}f}"


@dataclass(frozen=True)
class RequestStatus:
    """A request's status for a person: its label, a Bootstrap colour and whether it is over."""

    label: str
    colour: str
    final: bool

    def __str__(self) -> str:
        return self.label


# the facilities' words (tom_observations' ObservationRecord.status: LCO, SOAR, the simulated facility...)
_FACILITY = {
    "": RequestStatus("Submitted", "info", False),
    "PENDING": RequestStatus("Pending", "info", False),
    "SUBMITTED": RequestStatus("Submitted", "info", False),
    "SCHEDULED": RequestStatus("Scheduled", "primary", False),
    "ATTEMPTED": RequestStatus("Observing", "primary", False),
    "IN_PROGRESS": RequestStatus("Observing", "primary", False),
    "COMPLETED": RequestStatus("Completed", "success", True),
    "CANCELED": RequestStatus("Cancelled", "secondary", True),
    "CANCELLED": RequestStatus("Cancelled", "secondary", True),
    "WINDOW_EXPIRED": RequestStatus("Expired", "secondary", True),
    "FAILED": RequestStatus("Failed", "danger", True),
    "FAILURE_LIMIT_REACHED": RequestStatus("Failed", "danger", True),
    "NOT_ATTEMPTED": RequestStatus("Failed", "danger", True),
}
# a rule's trigger before (or instead of) a request at the facility (ObservationTrigger.Status)
_TRIGGER = {
    "pending": RequestStatus("Waiting to submit", "warning", False),
    "submitting": RequestStatus("Waiting to submit", "warning", False),
    "submitted": _FACILITY[""],
    "failed": RequestStatus("Not submitted (error)", "danger", True),
}
# what a GW retraction did to a request (EventObservation.Status); "active" and "not_needed" say nothing
_RETRACTION = {
    "cancel_pending": RequestStatus("Cancelling (event retracted)", "warning", False),
    "cancelled": RequestStatus("Cancelled (event retracted)", "secondary", True),
    "flagged": RequestStatus("Cancel by hand (event retracted)", "danger", False),
}


def request_status(
    record_status: str | None = None, trigger_status: str | None = None, retraction_status: str | None = None
) -> RequestStatus:
    """The one status of an observation request, from whichever of its three records are at hand.

    Parameters
    ----------
    record_status : str, optional
        ``ObservationRecord.status``, the facility's own word (authoritative once the request exists).
    trigger_status : str, optional
        ``ObservationTrigger.status``, for a rule's request not (yet) at the facility.
    retraction_status : str, optional
        ``EventObservation.status``: a retraction's cancellation overrides a request still open.

    Examples
    --------
    >>> str(request_status("PENDING")), str(request_status(trigger_status="submitted"))
    ('Pending', 'Submitted')
    >>> str(request_status("PENDING", retraction_status="cancel_pending"))
    'Cancelling (event retracted)'
    >>> str(request_status("COMPLETED", retraction_status="not_needed"))
    'Completed'
    """
    status = None
    if record_status is not None:
        word = record_status.strip().upper()
        status = _FACILITY.get(word) or RequestStatus(word.replace("_", " ").capitalize(), "secondary", False)
    elif trigger_status is not None:
        status = _TRIGGER.get(trigger_status) or RequestStatus(trigger_status.capitalize(), "secondary", False)
    if retraction_status in _RETRACTION and (status is None or not status.final or retraction_status == "cancelled"):
        return _RETRACTION[retraction_status]
    return status or _FACILITY[""]


def status_of(obj: object) -> RequestStatus:
    """:func:`request_status` of an ``ObservationRecord``, an ``ObservationTrigger`` or an ``EventObservation``.

    A record is looked up with its GW event links (a retraction may be cancelling it); a trigger takes its
    first request's status once it has one; an event link takes its record's.
    """
    from tom_observations.models import ObservationRecord

    from .models import EventObservation, ObservationTrigger

    if isinstance(obj, EventObservation):
        return request_status(obj.observation_record.status, retraction_status=obj.status)
    if isinstance(obj, ObservationTrigger):
        records = list(obj.observation_records.all())
        if records:
            return status_of(records[0])
        return request_status(trigger_status=obj.status)
    if isinstance(obj, ObservationRecord):
        links = [link.status for link in obj.gw_event_links.all()]
        retraction = next((s for s in ("flagged", "cancel_pending", "cancelled") if s in links), None)
        return request_status(obj.status, retraction_status=retraction)
    raise TypeError(f"no request status for {type(obj).__name__}")
