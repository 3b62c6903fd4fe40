"""Topic handlers used by the tests (the real handler signature: ``handler(alert, metadata)``)."""

from __future__ import annotations

import collections

from tests.testapp.models import HandledMessage

#: handler calls per seq in this process, including the ones whose writes were rolled back
CALLS: collections.Counter = collections.Counter()


def record(alert, metadata) -> None:
    """Write one HandledMessage for ``alert.content['seq']``; raise for ``{"poison": true}``."""
    content = alert.content
    seq = content["seq"]
    CALLS[seq] += 1
    HandledMessage.objects.create(seq=seq, topic=metadata.topic)
    if content.get("poison"):
        raise ValueError(f"poison message {seq}")


FLAKY_FAILURES: collections.Counter = collections.Counter()


def flaky(alert, metadata) -> None:
    """Fail the first ``content['fail_times']`` calls for a seq, then succeed."""
    content = alert.content
    seq = content["seq"]
    CALLS[seq] += 1
    HandledMessage.objects.create(seq=seq, topic=metadata.topic)
    if FLAKY_FAILURES[seq] < content.get("fail_times", 0):
        FLAKY_FAILURES[seq] += 1
        raise RuntimeError(f"transient failure {FLAKY_FAILURES[seq]} of {seq}")


def requires_marker(alert, metadata) -> None:
    """Fail until a HandledMessage with seq -1 exists (a cause that an operator can fix)."""
    if not HandledMessage.objects.filter(seq=-1).exists():
        raise LookupError("marker row missing")
    HandledMessage.objects.create(seq=alert.content["seq"], topic=metadata.topic)


#: OperationalErrors raised so far per seq by :func:`transient_db`
TRANSIENT_DB_FAILURES: collections.Counter = collections.Counter()


def transient_db(alert, metadata) -> None:
    """Raise a database OperationalError (as a deadlock would) the first ``content['fail_times']`` calls."""
    from django.db import OperationalError

    content = alert.content
    seq = content["seq"]
    CALLS[seq] += 1
    if TRANSIENT_DB_FAILURES[seq] < content.get("fail_times", 0):
        TRANSIENT_DB_FAILURES[seq] += 1
        raise OperationalError("deadlock detected")
    HandledMessage.objects.create(seq=seq, topic=metadata.topic)


class RejectedAlert(ValueError):
    """An alert that can never be handled (duck-typed ``permanent``, as tom_mma's NoticeError)."""

    permanent = True


def reject_permanently(alert, metadata) -> None:
    """Raise a permanent error for ``{"reject": true}``, with the alert's ``text`` in the message."""
    content = alert.content
    CALLS[content["seq"]] += 1
    if content.get("reject"):
        raise RejectedAlert(f"rejected: {content.get('text', '')}")
    HandledMessage.objects.create(seq=content["seq"], topic=metadata.topic)


def raises_nul(alert, metadata) -> None:
    """Fail with a NUL in the message (PostgreSQL text columns refuse it)."""
    raise ValueError("bad byte \x00 in the alert")


def record_once(alert, metadata) -> None:
    """Idempotent :func:`record`: one HandledMessage per seq and topic however often it runs (as real handlers are)."""
    seq = alert.content["seq"]
    CALLS[seq] += 1
    HandledMessage.objects.get_or_create(seq=seq, topic=metadata.topic)


def record_pid(alert, metadata) -> None:
    """As :func:`record`, noting the process that ran it (``topic@pid``); ``content['sleep_ms']`` of work first."""
    import os
    import time

    content = alert.content
    time.sleep(content.get("sleep_ms", 0) / 1000)
    CALLS[content["seq"]] += 1
    HandledMessage.objects.create(seq=content["seq"], topic=f"{metadata.topic}@{os.getpid()}")
