"""Validation of JSON message fields, shared by tom-mma's versioned schemas.

Every error is a :class:`MessageError` (a ``ValueError``) whose text starts with the schema's name, so a
quarantined message says what was wrong with it: ``derived alert: kilonova_score must be a number, not str``.
It is ``permanent``: the ingest path quarantines the message at the first attempt (a message that does not
match its schema never will).
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Self

__all__ = ["FieldReader", "JSONMessage", "MessageError"]


class MessageError(ValueError):
    """A JSON message that does not match its schema (permanent: handling it again cannot help)."""

    permanent = True


class FieldReader:
    """Typed reads of a decoded JSON object's fields; every failure is a ``ValueError`` naming ``schema``.

    Examples
    --------
    >>> read = FieldReader("photometry point")
    >>> read.float(17.5, "magnitude")
    17.5
    >>> read.float("17.5", "magnitude")
    Traceback (most recent call last):
    ...
    tom_mma.schemas.fields.MessageError: photometry point: magnitude must be a number, not str
    """

    def __init__(self, schema: str) -> None:
        self.schema = schema

    def fail(self, reason: str) -> MessageError:
        """The error to raise for ``reason``."""
        return MessageError(f"{self.schema}: {reason}")

    def require(self, data: Mapping[str, Any], key: str, where: str = "") -> Any:
        """``data[key]``, or an error naming the missing field (``where`` prefixes its path)."""
        if key not in data:
            raise self.fail(f"missing field {where}{key!r}")
        return data[key]

    def str(self, value: Any, name: str, *, nullable: bool = False, empty: bool = False) -> str | None:
        """A string (not blank unless ``empty``); None passes when ``nullable``."""
        if value is None and nullable:
            return None
        if not isinstance(value, str):
            raise self.fail(f"{name} must be a string, not {type(value).__name__}")
        if not empty and not value.strip():
            raise self.fail(f"{name} must not be empty")
        return value

    def float(self, value: Any, name: str, *, nullable: bool = False) -> float | None:
        """A finite number as a float (a bool is refused); None passes when ``nullable``."""
        if value is None and nullable:
            return None
        # bool is an int subclass: reject it explicitly
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(f"{name} must be a number, not {type(value).__name__}")
        value = float(value)
        if not math.isfinite(value):
            raise self.fail(f"{name} must be finite, not {value}")
        return value

    def uuid(self, value: Any, name: str) -> str:
        """A UUID, in its canonical text form."""
        text = self.str(value, name)
        try:
            return str(uuid.UUID(text))
        except ValueError:
            raise self.fail(f"{name} must be a UUID, not {text!r}") from None

    def iso_utc(self, value: Any, name: str) -> str:
        """An ISO 8601 time in UTC (``Z`` or ``+00:00``), as given."""
        text = self.str(value, name)
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise self.fail(f"{name} must be an ISO 8601 time, not {text!r}") from None
        if parsed.tzinfo is None or parsed.utcoffset().total_seconds() != 0:
            raise self.fail(f"{name} must be in UTC (end with Z or +00:00), not {text!r}")
        return text

    def str_list(self, value: Any, name: str) -> tuple[str, ...]:
        """A list of non-blank strings, as a tuple."""
        if not isinstance(value, list | tuple):
            raise self.fail(f"{name} must be a list, not {type(value).__name__}")
        return tuple(self.str(v, f"{name}[{i}]") for i, v in enumerate(value))


class JSONMessage:
    """``to_json``/``from_json`` for a schema dataclass with ``to_dict``/``from_dict`` and a ``_read``.

    ``_read`` is the schema's :class:`FieldReader` (its name starts every error).
    """

    _read: FieldReader

    def to_dict(self) -> dict[str, Any]:  # pragma: no cover - every schema defines it
        """The message as the JSON document of its schema."""
        raise NotImplementedError

    @classmethod
    def from_dict(cls, data: Any) -> Self:  # pragma: no cover - every schema defines it
        """Validate a JSON document of the schema into the message."""
        raise NotImplementedError

    def to_json(self) -> bytes:
        """UTF-8 JSON bytes of :meth:`to_dict`, keys sorted (the same message gives the same bytes)."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), allow_nan=False).encode()

    @classmethod
    def from_json(cls, payload: bytes | str) -> Self:
        """Parse JSON bytes/text; raise ``ValueError`` with the reason."""
        try:
            data = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise cls._read.fail(f"not valid JSON ({exc})") from None
        return cls.from_dict(data)
