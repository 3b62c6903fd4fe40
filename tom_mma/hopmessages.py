"""hop messages as the two apps read them: headers, the ``_id``, the payload, and the archive's header encoding.

One module, used by both apps (``tom_mma_broker`` imports it; ``tom_mma`` never imports the broker), so that
a message's id is read one way everywhere:

- :func:`message_id` reads hop's ``_id`` header (16 raw UUID bytes, as hop writes it, or a UUID's text);
  a header that is absent or malformed gives ``None``, never an exception: the id is an idempotency key,
  and a message without a usable one is keyed otherwise (topic/partition/offset), not refused;
- :func:`payload` gets the payload out of whatever a stream hands a topic handler (a hop model's
  ``.content``, a ``confluent_kafka.Message``'s ``.value()``, a dict, bytes);
- :func:`encode_headers` and :func:`decode_headers` turn Kafka headers into JSON and back, losslessly
  (values that are not printable UTF-8 are kept as ``base64:``).
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "BASE64_PREFIX",
    "EmptyMessage",
    "NotJSON",
    "decode_headers",
    "encode_headers",
    "header_value",
    "json_payload",
    "message_id",
    "metadata_headers",
    "payload",
]

#: prefix of a header value kept as base64 in the archive (bytes that are not printable UTF-8)
BASE64_PREFIX = "base64:"

Headers = Iterable[tuple[str, bytes | str | None]]


def header_value(headers: Headers | None, name: str) -> bytes | None:
    """The first value of header ``name`` as bytes, or None.

    Examples
    --------
    >>> header_value([("_format", b"json"), ("_id", "x")], "_id")
    b'x'
    >>> header_value(None, "_id") is None
    True
    """
    for key, value in headers or ():
        if key == name:
            if value is None:
                return None
            return value if isinstance(value, bytes) else str(value).encode()
    return None


def message_id(headers: Headers | None) -> uuid.UUID | None:
    """Hop's ``_id`` header as a UUID; None when it is absent or malformed.

    Examples
    --------
    >>> u = uuid.UUID("12345678-1234-5678-1234-567812345678")
    >>> message_id([("_id", u.bytes)]) == u, message_id([("_id", str(u).encode())]) == u
    (True, True)
    >>> message_id([("_id", b"not-a-uuid")]) is None, message_id([]) is None
    (True, True)
    """
    value = header_value(headers, "_id")
    if not value:
        return None
    try:
        return uuid.UUID(bytes=value) if len(value) == 16 else uuid.UUID(value.decode())
    except (ValueError, UnicodeDecodeError):
        return None


def metadata_headers(metadata: Any) -> list[tuple[str, Any]]:
    """The headers of a hop ``Metadata``, a ``confluent_kafka.Message`` or a mapping with ``headers``."""
    if metadata is None:
        return []
    if isinstance(metadata, Mapping):
        return list(metadata.get("headers") or ())
    headers = getattr(metadata, "headers", None)
    if callable(headers):  # confluent_kafka.Message.headers()
        headers = headers()
    return list(headers or ())


class NotJSON(ValueError):
    """A message whose payload is not JSON where JSON was expected (permanent: trying again cannot help)."""

    permanent = True


class EmptyMessage(ValueError):
    """A Kafka message with no value: nothing to handle, and trying again cannot help."""

    permanent = True


def payload(message: Any) -> Any:
    """The payload of whatever a stream hands a topic handler.

    A hop model (``AvroBlob``, ``JSONBlob``, ``Blob``) gives its ``.content``; a raw ``confluent_kafka.Message``
    (as tom-alertstreams' ``GCNClassicAlertStream`` hands it) its ``.value()``; anything else is returned as
    it is (a decoded dict, bytes, text).

    Raises
    ------
    EmptyMessage
        A Kafka message without a value.
    """
    if hasattr(message, "content"):
        return message.content
    value = getattr(message, "value", None)
    if callable(value):  # a confluent_kafka.Message (str and bytes have no ``value``; dict has ``values``)
        raw = value()
        if raw is None:
            raise EmptyMessage("an empty Kafka message (no value)")
        return raw
    return message


def json_payload(message: Any, what: str = "message") -> Any:
    """The JSON value of a message: decoded by hop already (a mapping), or JSON bytes or text.

    Parameters
    ----------
    message
        What the stream handed the handler (see :func:`payload`).
    what : str
        How errors name the message, e.g. ``"derived alert"``.

    Raises
    ------
    ValueError
        If the payload is not JSON.

    Examples
    --------
    >>> json_payload(b'{"a": 1}')
    {'a': 1}
    >>> json_payload(b"{", "photometry")
    Traceback (most recent call last):
    ...
    tom_mma.hopmessages.NotJSON: photometry: the message is not JSON (...)
    """
    content = payload(message)
    if isinstance(content, Mapping):  # decoded by hop already
        return content
    if isinstance(content, bytes | bytearray | str):
        try:
            return json.loads(content)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise NotJSON(f"{what}: the message is not JSON ({exc})") from None
        except RecursionError:  # nested deeper than Python's recursion limit
            raise NotJSON(f"{what}: the message is not JSON (nested too deeply)") from None
    raise NotJSON(f"{what}: cannot read a message of type {type(content).__name__}")


def encode_headers(headers: Headers, clean: Any = str) -> list[list[str]]:
    """Kafka headers as JSON: ``[[name, text]]``, values that are not printable UTF-8 as ``base64:...``.

    Parameters
    ----------
    headers : iterable of (str, bytes)
        As confluent-kafka gives them.
    clean : callable
        Applied to header names (the archive passes its cleaner of what the database refuses).

    Examples
    --------
    >>> encode_headers([("_format", b"json"), ("_id", b"\\x00\\x01")])
    [['_format', 'json'], ['_id', 'base64:AAE=']]
    >>> decode_headers(encode_headers([("_id", b"\\x00\\x01"), ("k", b"v")]))
    [('_id', b'\\x00\\x01'), ('k', b'v')]
    """
    out = []
    for key, value in headers:
        key = clean(key) if isinstance(key, str) else str(key)
        if isinstance(value, bytes):
            try:
                text = value.decode("utf-8")
                if text.isprintable() and not text.startswith(BASE64_PREFIX):
                    out.append([key, text])
                    continue
            except UnicodeDecodeError:
                pass
            out.append([key, BASE64_PREFIX + base64.b64encode(value).decode()])
        else:
            out.append([key, "" if value is None else str(value)])
    return out


def decode_headers(encoded: Iterable[Iterable[str]]) -> list[tuple[str, bytes]]:
    """The Kafka headers that :func:`encode_headers` wrote."""
    headers = []
    for key, value in encoded:
        if value.startswith(BASE64_PREFIX):
            headers.append((key, base64.b64decode(value[len(BASE64_PREFIX) :])))
        else:
            headers.append((key, value.encode()))
    return headers
