"""Backfill from GraceDB: a superevent's LVK notices, fetched from GraceDB's public API, through the ingest path.

For a TOM that was down, or started after the event and past the brokers' few days of retention:
:func:`backfill_superevent` lists the superevent's files (``GET <GRACEDB_URL>/api/superevents/<id>/files/``),
fetches its LVK alert notices (the JSON and Avro files named ``<id>-<alert type>[...].json|avro``, each
version), orders them by ``time_created`` and runs them through :class:`~tom_mma_broker.ingest.Ingestor`
exactly as the stream would: archived once (keyed on the content: a second backfill adds nothing),
quarantined with the reason when bad, retractions applied in order. The sky maps travel inside the notices.
"""

from __future__ import annotations

import json
import logging
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .conf import broker_settings
from .ingest import Envelope, Ingestor, IngestResult

__all__ = ["GraceDBError", "NoticeFile", "notice_files", "backfill_superevent"]

logger = logging.getLogger(__name__)

_SUPEREVENT = re.compile(r"^[MT]?S\d{6}[a-z]{1,3}$")
_TYPES = ("earlywarning", "preliminary", "initial", "update", "retraction")
_ORDER = {t.upper(): i for i, t in enumerate(_TYPES)}


class GraceDBError(RuntimeError):
    """GraceDB could not be asked, or answered something else than its API documents."""


@dataclass(frozen=True)
class NoticeFile:
    """One notice file of a superevent, fetched."""

    name: str
    format: str
    payload: bytes
    time_created: str
    alert_type: str


def _get(url: str, timeout: float) -> bytes:
    if urllib.parse.urlparse(url).scheme not in ("http", "https"):
        raise GraceDBError(f"not an http(s) URL: {url!r}")
    request = urllib.request.Request(url, headers={"Accept": "application/json, */*"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - http(s) only, checked
            return response.read()
    except urllib.error.HTTPError as exc:
        raise GraceDBError(f"GraceDB answered {exc.code} for {url}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise GraceDBError(f"GraceDB cannot be reached at {url}: {exc}") from exc


def _is_notice(name: str, superevent_id: str) -> str | None:
    """The format of a notice file name (``json``/``avro``), or None for another file."""
    base = name.split(",", 1)[0]
    match = re.match(rf"^{re.escape(superevent_id)}-([a-z]+)(?:[-_][\w.-]*)?\.(json|avro)$", base)
    if match is None or match.group(1) not in _TYPES:
        return None
    return match.group(2)


def _header(fmt: str, payload: bytes) -> tuple[str, str]:
    """(time_created, alert_type) of a notice file, for ordering (empty strings when unreadable)."""
    try:
        if fmt == "json":
            record = json.loads(payload)
        else:
            from .formats import read_avro_container

            record = read_avro_container(payload)[0][0]
        return str(record.get("time_created") or ""), str(record.get("alert_type") or "")
    except Exception:  # noqa: BLE001 - an unreadable file is ingested anyway, last, and quarantined there
        return "", ""


def notice_files(superevent_id: str, base_url: str | None = None, timeout: float = 30.0) -> list[NoticeFile]:
    """The superevent's notice files, ordered by ``time_created`` then alert type (GraceDB's file listing).

    Raises
    ------
    GraceDBError
        When GraceDB cannot be reached or does not list the superevent's files.
    ValueError
        For a string that is not a superevent id.
    """
    if not _SUPEREVENT.match(superevent_id):
        raise ValueError(f"not a superevent id: {superevent_id!r}")
    base = (base_url or broker_settings.GRACEDB_URL).rstrip("/")
    listing_url = f"{base}/api/superevents/{superevent_id}/files/"
    try:
        listing = json.loads(_get(listing_url, timeout))
    except ValueError as exc:
        raise GraceDBError(f"GraceDB's file list of {superevent_id} is not JSON: {exc}") from exc
    if not isinstance(listing, dict):
        raise GraceDBError(f"GraceDB's file list of {superevent_id} is not an object")
    names = [n for n in listing if _is_notice(n, superevent_id)]
    versioned = {n.split(",", 1)[0] for n in names if "," in n}
    # GraceDB lists each file by its name (the latest version) and by name,N for every version: take those
    names = [n for n in names if "," in n or n not in versioned]
    files = []
    for name in sorted(names):
        url = listing[name]
        if not isinstance(url, str):
            raise GraceDBError(f"GraceDB's file list gives no URL for {name}")
        fmt = _is_notice(name, superevent_id)
        payload = _get(urllib.parse.urljoin(listing_url, url), timeout)
        time_created, alert_type = _header(fmt, payload)
        files.append(NoticeFile(name, fmt, payload, time_created, alert_type))
    files.sort(key=lambda f: (f.time_created == "", f.time_created, _ORDER.get(f.alert_type, 99), f.name))
    return files


def backfill_superevent(
    superevent_id: str,
    handler: Any,
    base_url: str | None = None,
    topic: str | None = None,
    timeout: float = 30.0,
) -> Iterator[tuple[NoticeFile, IngestResult]]:
    """Fetch a superevent's notices from GraceDB and ingest them in ``time_created`` order.

    Parameters
    ----------
    superevent_id : str
        E.g. ``S230518h``.
    handler : callable
        ``handler(alert, metadata)`` of a notice (Avro or JSON), as a topic handler is called.
    base_url : str, optional
        GraceDB (default ``TOM_MMA_BROKER['GRACEDB_URL']``).
    topic : str, optional
        The topic they are archived as (default ``gracedb.<superevent id>``).

    Yields
    ------
    (NoticeFile, IngestResult)
        One per notice, in the order ingested (one transaction each, as a stream batch of one).
    """
    files = notice_files(superevent_id, base_url, timeout)
    topic = topic or f"gracedb.{superevent_id}"
    ingestor = Ingestor({topic: handler})
    for notice in files:
        envelope = Envelope(topic=topic, payload=notice.payload, headers=[("_format", notice.format.encode())],
                            origin=f"gracedb:{notice.name}")  # fmt: skip
        (result,) = ingestor.ingest([envelope])
        logger.info("GraceDB %s %s: %s", superevent_id, notice.name, result.outcome.value)
        yield notice, result
