"""Files of SNEWS messages: a JSON list, one JSON object, or one JSON object per line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["read_messages"]


def read_messages(path: Path) -> Iterator[tuple[str, Any]]:
    """Yield ``(where, message)`` for each message of the file (``where``: item or line number).

    Raises
    ------
    ValueError
        If the file is neither JSON nor JSON lines.
    """
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except ValueError:
        data = None
        lines = [(i, line) for i, line in enumerate(text.splitlines(), 1) if line.strip()]
        for i, line in lines:
            try:
                yield f"line {i}", json.loads(line)
            except ValueError as exc:
                raise ValueError(f"line {i} is not JSON: {exc}") from exc
        return
    if isinstance(data, list):
        for i, item in enumerate(data):
            yield f"item {i}", item
    else:
        yield "item 0", data
