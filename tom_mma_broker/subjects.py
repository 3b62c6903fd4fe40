"""What an archived message is about (its superevent, candidate or event id) and where it came from.

One best-effort reader for every format the archive keeps, for the admin's subject column and the API, and
one search of the archive by such an id (:func:`search_archive`).

Examples
--------
>>> subject_of({"superevent_id": "S230518h", "alert_type": "PRELIMINARY"})
'S230518h'
>>> subject_of({"candidate": {"name": "AT2017gfo"}, "kilonova_score": 0.9})
'AT2017gfo'
>>> subject_of({"object_name": "AT2017gfo", "band": "r"})
'AT2017gfo'
>>> subject_of({"id": ["524666471", "bn170817529"], "mission": "Fermi"})
'524666471, bn170817529'
>>> subject_of(None)
''
"""

from __future__ import annotations

from typing import Any

__all__ = ["origin_of", "search_archive", "subject_of"]

# first key found wins: LVK notices, tom-mma photometry, then the usual names of GCN, SNEWS, ZTF and Rubin ids
_KEYS = ("superevent_id", "object_name", "event_name", "objectId", "diaObjectId", "name", "id")


def subject_of(content: Any) -> str:
    """The superevent, candidate or event id a decoded message is about, or ``""`` when none is found.

    Parameters
    ----------
    content
        The decoded content of an archived message (``ArchivedAlert.content``), of any shape.

    Returns
    -------
    str
        The id as text (the ids of a list, joined), at most 100 characters.
    """
    if not isinstance(content, dict):
        return ""
    candidate = content.get("candidate")
    if isinstance(candidate, dict) and candidate.get("name"):
        return str(candidate["name"])[:100]
    event = content.get("event")
    if isinstance(event, dict) and event.get("superevent_id"):
        return str(event["superevent_id"])[:100]
    for key in _KEYS:
        value = content.get(key)
        if isinstance(value, list):
            value = ", ".join(str(v) for v in value if v not in (None, ""))
        if value not in (None, ""):
            return str(value)[:100]
    return ""


def search_archive(queryset: Any, term: str) -> Any:
    """The archived messages of ``queryset`` whose key, topic or decoded content contains ``term``.

    The content is searched as JSON text (case-insensitive, on any database): a scan of the rows the other
    filters left, fine for an operator's search, not an index.

    Parameters
    ----------
    queryset
        ``ArchivedAlert`` rows.
    term
        A superevent, candidate or event id, or any text.
    """
    from django.db.models import Q, TextField
    from django.db.models.functions import Cast
    from django.db.models.lookups import IContains

    return queryset.filter(
        Q(key__icontains=term) | Q(topic__icontains=term) | IContains(Cast("content", output_field=TextField()), term)
    )


def origin_of(key: str, topic: str, partition: int | None, offset: int | None) -> str:
    """Where a message came from: ``topic[partition]@offset`` off Kafka, else how it was replayed.

    Examples
    --------
    >>> origin_of("kafka:gw/0/12", "gw", 0, 12)
    'gw[0]@12'
    >>> origin_of("sha256:gw/ab12", "gw", None, None)
    'file replay as gw'
    >>> origin_of("id:0b5e", "gw", None, None)
    'replay as gw (hop id)'
    """
    if partition is not None and offset is not None:
        return f"{topic}[{partition}]@{offset}"
    if key.startswith("sha256:"):
        return f"file replay as {topic}"
    return f"replay as {topic} (hop id)"
