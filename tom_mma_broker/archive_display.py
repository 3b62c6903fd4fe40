"""What a person needs to see of an archived message: its subject and where it came from.

Read by the admin's archive list and by the stream health page. Alert content is untrusted: these functions
return plain text, which Django escapes.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SUBJECT_KEYS", "origin_of", "subject_of"]

#: keys of a decoded message that name what it is about, most specific first: a GW superevent, an optical
#: candidate (source photometry, Fink, a derived alert's candidate), a GRB or neutrino event
SUBJECT_KEYS = (
    "superevent_id",
    "object_name",
    "objectId",
    "candidate",
    "name",
    "event_name",
    "trigger_name",
    "id",
    "event_id",
    "trigger_id",
)
_SUBJECT_MAX = 100


def subject_of(content: Any) -> str:
    """The superevent, candidate or event a decoded message is about (``""`` when it names none).

    Examples
    --------
    >>> subject_of({"superevent_id": "S190425z", "alert_type": "PRELIMINARY"})
    'S190425z'
    >>> subject_of({"candidate": {"name": "AT2017gfo", "ra": 197.45}})
    'AT2017gfo'
    >>> subject_of({"objectId": "ZTF17aaaaaaa"}), subject_of([1, 2]), subject_of(None)
    ('ZTF17aaaaaaa', '', '')
    """
    if not isinstance(content, dict):
        return ""
    for key in SUBJECT_KEYS:
        value = content.get(key)
        if isinstance(value, dict):
            value = value.get("name") or value.get("id")
        if isinstance(value, list) and value and isinstance(value[0], str | int):
            value = value[0]
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip():
            return str(value).strip()[:_SUBJECT_MAX]
    return ""


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
