"""Kafka connection settings: broker URL (the embedded broker by default), credentials, producers.

Secrets come from the caller (the TOM's settings, which read the environment); they are never
logged. ``url`` may be ``"embedded"`` (or empty): the embedded broker recorded in the state
directory is used.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlparse

from django.conf import settings

from .conf import broker_settings
from .embedded import BrokerInfo, EmbeddedBrokerError, EmbeddedKafka

__all__ = [
    "EMBEDDED",
    "embedded_broker",
    "resolve_broker_url",
    "bootstrap_servers",
    "hop_auth",
    "open_producer",
    "stream_url",
    "hop_headers",
]

logger = logging.getLogger(__name__)

EMBEDDED = "embedded"


def embedded_broker() -> EmbeddedKafka:
    """The embedded broker of this TOM (its state directory from the settings)."""
    state_dir = broker_settings.EMBEDDED_STATE_DIR
    if not state_dir:
        base = getattr(settings, "BASE_DIR", None) or Path.cwd()
        state_dir = Path(base) / ".tom_mma" / "kafka"
    return EmbeddedKafka(state_dir)


def _running_embedded() -> BrokerInfo:
    info = embedded_broker().status()
    if info is None:
        raise EmbeddedBrokerError(
            "the embedded Kafka broker is not running: start it with `./manage.py kafkabroker start`, "
            "or set the Kafka URL of a real broker"
        )
    return info


def is_embedded(url: str | None) -> bool:
    """Whether ``url`` names the embedded broker (``"embedded"``, ``kafka://embedded`` or empty)."""
    return not url or url == EMBEDDED or url.rstrip("/") == f"kafka://{EMBEDDED}"


def check_broker_url(url: object) -> None:
    """Refuse a broker URL that can never work, without asking any broker.

    Raises
    ------
    ValueError
        Not ``kafka://host:port`` (a topic path may follow) nor the embedded broker.

    Examples
    --------
    >>> check_broker_url("kafka://kafka.scimma.org"), check_broker_url("embedded")
    (None, None)
    >>> check_broker_url("http://kafka.scimma.org")
    Traceback (most recent call last):
    ...
    ValueError: not a kafka:// URL: 'http://kafka.scimma.org' (a broker is kafka://host:port or 'embedded')
    """
    if url is not None and not isinstance(url, str):
        raise ValueError(f"a broker URL is a string, not {type(url).__name__}")
    if is_embedded(url):
        return
    parsed = urlparse(url)
    if parsed.scheme != "kafka" or not parsed.netloc:
        raise ValueError(f"not a kafka:// URL: {url!r} (a broker is kafka://host:port or 'embedded')")


def resolve_broker_url(url: str | None) -> str:
    """``kafka://host:port`` for ``url``, resolving ``"embedded"``/empty to the embedded broker.

    Any topic path in ``url`` is dropped.

    Raises
    ------
    ValueError
        See :func:`check_broker_url`.
    """
    check_broker_url(url)
    if is_embedded(url):
        return _running_embedded().url
    return f"kafka://{urlparse(url).netloc}"


def bootstrap_servers(url: str | None) -> str:
    """``host:port`` (without credentials) for confluent-kafka."""
    netloc = urlparse(resolve_broker_url(url)).netloc
    return netloc.rsplit("@", 1)[-1]


def stream_url(url: str | None, topics: Iterable[str]) -> str:
    """A hop URL for reading or writing ``topics`` on the broker at ``url``."""
    return resolve_broker_url(url).rstrip("/") + "/" + ",".join(topics)


#: hosts whose broker is this machine's (the embedded one, a local test Kafka): plaintext, never hop's stored
#: credentials (a stored credential without a hostname would otherwise match them)
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")


def is_local_host(host: str) -> bool:
    """Whether ``host`` is this machine (a loopback name or address).

    Examples
    --------
    >>> is_local_host("127.0.0.1"), is_local_host("localhost"), is_local_host("kafka.scimma.org")
    (True, True, False)
    """
    return host.strip("[]") in _LOCAL_HOSTS or host.startswith("127.")


def hop_auth(
    username: str | None,
    password: str | None,
    method: str = "SCRAM-SHA-512",
    protocol: str = "SASL_SSL",
    url: str | None = None,
):
    """A hop ``Auth`` for the broker at ``url``, or ``False`` (no authentication).

    With a username and a password, those (SCRAM over TLS for SCiMMA Hopskotch). Without a password,
    the credentials hop itself stores for the broker's host (``hop auth add``, in
    ``$XDG_CONFIG_HOME/hop/auth.toml`` or ``~/.config/hop/auth.toml``, as the LVK user guide sets them
    up), the one named ``username`` where several match. The embedded broker and loopback hosts take no
    credentials. Secrets are never logged.

    Parameters
    ----------
    username, password : str or None
        Configured credentials (from the environment); empty: look in hop's stored credentials.
    method, protocol : str
        SASL mechanism and security protocol for configured credentials.
    url : str, optional
        The broker (``kafka://host:port`` or ``"embedded"``); without it, only configured credentials count.

    Raises
    ------
    django.core.exceptions.ImproperlyConfigured
        hop's credential file is unreadable or unsafe, or several stored credentials match the host and
        no username says which.
    """
    from hop.auth import Auth

    if username and password:
        return Auth(username, password, method=method, protocol=protocol)
    host = urlparse(url).hostname if url and url != EMBEDDED and "://" in url else None
    if not host or is_local_host(host):
        return False
    return _stored_auth(host, urlparse(url).port, username or None)


def _stored_auth(host: str, port: int | None, username: str | None):
    """Hop's stored credential for ``host`` (``False`` when hop stores none)."""
    from django.core.exceptions import ImproperlyConfigured
    from hop.auth import AmbiguousCredentialError, load_auth, select_matching_auth

    try:
        creds = load_auth()
    except FileNotFoundError:
        logger.info("no Kafka credentials configured for %s and none stored by hop: no authentication", host)
        return False
    except (RuntimeError, KeyError) as exc:  # unsafe permissions, or a file hop cannot parse
        raise ImproperlyConfigured(f"hop's stored credentials cannot be used: {exc}") from exc
    target = f"{host}:{port}" if port else host
    try:
        auth = select_matching_auth(creds, target, username)
    except AmbiguousCredentialError as exc:
        raise ImproperlyConfigured(
            f"several of hop's stored credentials match {target}: set USERNAME to the one to use ({exc})"
        ) from exc
    except RuntimeError:
        logger.info("hop stores no credentials for %s: no authentication", target)
        return False
    logger.info("using hop's stored credentials for %s (user %s)", target, auth.username)
    return auth


def open_producer(
    url: str | None, topic: str | None = None, auth=False, idempotent: bool = True, timeout: float | None = None
):
    """Open a hop producer on ``url`` (``"embedded"`` allowed), for ``topic`` if given.

    The producer is idempotent by default and does not ask the broker for topic configs it
    may not report (hop's automatic offload is off). With ``timeout``, a message the broker has not
    acknowledged within that many seconds fails (its delivery callback gets the error) and closing
    does not wait longer; without, closing waits for every queued message.

    Returns
    -------
    hop.io.Producer
        Use it as a context manager; ``write(message, headers=..., key=..., topic=...)``.
    """
    from hop import Stream

    target = stream_url(url, [topic] if topic else [])
    from datetime import timedelta

    extra = {} if timeout is None else {"produce_timeout": timedelta(seconds=timeout)}
    return Stream(auth=auth).open(target, "w", automatic_offload=False, use_idempotence=idempotent, **extra)


def hop_headers(
    fmt: str, message_id: uuid.UUID | None = None, sender: str = "tom-mma", extra: Iterable[tuple[str, bytes]] = ()
) -> tuple[uuid.UUID, list[tuple[str, bytes]]]:
    """Hop's headers for a message written as raw bytes: ``_id`` (uuid4 bytes), ``_sender``, ``_format``.

    Returns
    -------
    message_id, headers
        The id (the archive's idempotency key) and the header list.
    """
    message_id = message_id or uuid.uuid4()
    headers = [("_id", message_id.bytes), ("_sender", sender.encode()), ("_format", fmt.encode())]
    return message_id, headers + list(extra)
