"""Run archived messages again through their topic's handler as the TOM now configures it.

For a message archived while its topic had no handler, one quarantined before a fix, or any message
a new handler should see. ``reprocessalerts`` is a thin command over :func:`reprocess`; each message
goes through :meth:`~tom_mma_broker.ingest.Ingestor.rehandle`, the ingest rules of the stream.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from datetime import datetime

from django.db.models import QuerySet

from .envelope import configured_handlers
from .ingest import Ingestor, IngestResult
from .models import ArchivedAlert

__all__ = ["REPROCESS_STATUSES", "archived_messages", "reprocess"]

#: the archive statuses that can be run again (a hop test message never runs its handler)
REPROCESS_STATUSES = (ArchivedAlert.Status.ARCHIVED, ArchivedAlert.Status.QUARANTINED, ArchivedAlert.Status.HANDLED)


def archived_messages(
    topic: str,
    since: datetime | None = None,
    until: datetime | None = None,
    statuses: Collection[str] = REPROCESS_STATUSES,
) -> QuerySet[ArchivedAlert]:
    """The archived messages of ``topic`` received in ``[since, until)`` with one of ``statuses``, in archive order."""
    messages = ArchivedAlert.objects.filter(topic=topic, status__in=list(statuses))
    if since is not None:
        messages = messages.filter(received__gte=since)
    if until is not None:
        messages = messages.filter(received__lt=until)
    return messages.order_by("received", "pk")


def reprocess(
    topic: str,
    since: datetime | None = None,
    until: datetime | None = None,
    statuses: Collection[str] = REPROCESS_STATUSES,
) -> Iterator[IngestResult]:
    """Run the selected archived messages (see :func:`archived_messages`) through ``topic``'s handler.

    One transaction per message; idempotent handlers make nothing twice. A message whose status
    changed since it was selected (another process re-handled it) is skipped.

    Parameters
    ----------
    topic : str
        The topic whose messages run again, through the handler ``ALERT_STREAMS`` configures for it now.
    since, until : datetime, optional
        Bounds on when the messages were received.
    statuses : collection of str
        Archive statuses to run (default: archived, quarantined and handled).

    Yields
    ------
    IngestResult
        One per message run, in archive order.

    Raises
    ------
    django.db.OperationalError, django.db.InterfaceError
        A transient database error; the messages run so far keep their new state.
    """
    ingestor = Ingestor(configured_handlers(topic))
    for pk in archived_messages(topic, since, until, statuses).values_list("pk", flat=True).iterator():
        result = ingestor.rehandle(pk, statuses=set(statuses))
        if result is not None:
            yield result
