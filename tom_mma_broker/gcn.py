"""GCN Kafka (kafka.gcn.nasa.gov) for the reliable stream: OAuth client credentials as ``gcn-kafka`` sets them.

GCN Kafka authenticates with OpenID Connect client credentials (SASL ``OAUTHBEARER``, librdkafka's ``oidc``
method: librdkafka fetches and refreshes the token from GCN's token endpoint itself). :func:`gcn_oauth_config`
gives confluent-kafka the same settings ``gcn-kafka`` 0.3 gives it for the same credentials (its
``get_config``), so that :class:`~tom_mma_broker.streams.ReliableHopskotchAlertStream` reads GCN topics with
every guarantee of the Hopskotch side. In ``ALERT_STREAMS``::

    {"ACTIVE": True, "NAME": "tom_mma_broker.streams.ReliableHopskotchAlertStream",
     "OPTIONS": {"URL": "kafka://kafka.gcn.nasa.gov", "GROUP_ID": "my-tom-gcn",
                 "GCN_CLIENT_ID": os.environ["GCN_CLIENT_ID"], "GCN_CLIENT_SECRET": os.environ["GCN_CLIENT_SECRET"],
                 "TOPIC_HANDLERS": {"gcn.notices.igwn.gwalert": "tom_mma.handlers.lvk.gcn_igwn_gwalert_handler"}}}

The secret is passed to librdkafka only; it is never logged (:func:`redacted`).
"""

from __future__ import annotations

from typing import Any

__all__ = ["GCN_DOMAIN", "gcn_oauth_config", "gcn_url", "redacted"]

GCN_DOMAIN = "gcn.nasa.gov"
_SECRETS = ("sasl.oauthbearer.client.secret", "sasl.password")


def gcn_url(domain: str = GCN_DOMAIN) -> str:
    """The Kafka URL of a GCN domain (``gcn.nasa.gov``, ``test.gcn.nasa.gov``, ``dev.gcn.nasa.gov``).

    Examples
    --------
    >>> gcn_url()
    'kafka://kafka.gcn.nasa.gov'
    """
    return f"kafka://kafka.{domain}"


def gcn_oauth_config(
    client_id: str,
    client_secret: str | None = None,
    domain: str = GCN_DOMAIN,
    token_endpoint: str | None = None,
    security_protocol: str = "sasl_ssl",
) -> dict[str, Any]:
    """The librdkafka settings of GCN's OAuth client credentials (without ``bootstrap.servers``, ``group.id``).

    Parameters
    ----------
    client_id, client_secret : str
        GCN client credentials (from the environment).
    domain : str
        GCN's domain; the token endpoint is ``https://auth.<domain>/oauth2/token``.
    token_endpoint : str, optional
        Another token endpoint (a test's loopback server).
    security_protocol : str
        ``sasl_ssl`` (GCN); ``sasl_plaintext`` or ``plaintext`` for a local broker.

    Examples
    --------
    >>> c = gcn_oauth_config("my-id", "my-secret")
    >>> c["sasl.mechanisms"], c["sasl.oauthbearer.method"], c["sasl.oauthbearer.token.endpoint.url"]
    ('OAUTHBEARER', 'oidc', 'https://auth.gcn.nasa.gov/oauth2/token')
    """
    if not client_id:
        raise ValueError("a GCN client id is needed")
    config: dict[str, Any] = {"security.protocol": security_protocol.lower()}
    if config["security.protocol"] == "sasl_ssl":
        # confluent-kafka's wheels may look for CA certificates elsewhere than this system keeps them
        import certifi

        config["ssl.ca.location"] = certifi.where()
        config["https.ca.location"] = certifi.where()
    if config["security.protocol"] == "plaintext":
        return config  # no SASL at all (the embedded broker): librdkafka would refuse SASL settings unused
    config.update({
        "sasl.mechanisms": "OAUTHBEARER",
        "sasl.oauthbearer.method": "oidc",
        "sasl.oauthbearer.client.id": client_id,
        "sasl.oauthbearer.token.endpoint.url": token_endpoint or f"https://auth.{domain}/oauth2/token",
    })  # fmt: skip
    if client_secret:
        config["sasl.oauthbearer.client.secret"] = client_secret
    return config


def redacted(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with its secrets replaced, for logs.

    Examples
    --------
    >>> redacted({"sasl.oauthbearer.client.secret": "s", "group.id": "g"})
    {'sasl.oauthbearer.client.secret': '***', 'group.id': 'g'}
    """
    return {k: ("***" if k in _SECRETS else v) for k, v in config.items()}
