"""Quarantined messages: handle them again once the cause is fixed (a handler bug, a missing row)."""

from __future__ import annotations

from .envelope import configured_handlers
from .ingest import HandlerMap, Ingestor, Outcome
from .models import ArchivedAlert

__all__ = ["rehandle"]


def rehandle(alert_pk: int, handlers: HandlerMap | None = None) -> str:
    """Handle a quarantined message once more, under the stream's rules (:meth:`Ingestor.rehandle`).

    An operator's retry is one try: a failure counts one attempt and keeps the message quarantined
    with the new reason beside the first; a transient database error is raised (the task retries it)
    and counts nothing. A message that is no longer quarantined is left alone.

    Parameters
    ----------
    alert_pk : int
        Primary key of the :class:`~tom_mma_broker.models.ArchivedAlert`.
    handlers : HandlerMap, optional
        Default: the handlers ``ALERT_STREAMS`` configures for the message's topic.

    Returns
    -------
    str
        ``"handled"`` (or ``"archived"`` when its topic has no handler now), ``"failed"`` or ``"skipped"``.
    """
    if handlers is None:
        topic = ArchivedAlert.objects.filter(pk=alert_pk).values_list("topic", flat=True).first()
        handlers = HandlerMap(configured_handlers(topic) if topic is not None else {})
    result = Ingestor(handlers, max_attempts=1).rehandle(alert_pk, statuses={ArchivedAlert.Status.QUARANTINED})
    if result is None:
        return "skipped"
    return "failed" if result.outcome is Outcome.QUARANTINED else result.outcome.value
