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
