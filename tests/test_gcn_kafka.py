"""GCN Kafka on the reliable stream: OAuth configuration as gcn-kafka's, a token fetched, the stream in plaintext.

GCN's brokers and token endpoint cannot be reached from here and the embedded broker has no SASL, so: the
consumer configuration is compared with ``gcn-kafka``'s own for the same credentials; librdkafka is shown to
fetch its token from a loopback stand-in of GCN's token endpoint (the broker then refuses SASL, as it must);
and the stream itself runs with the GCN options in plaintext against the embedded broker.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from tests.conftest import stream_config
from tom_mma.models import GWEvent
from tom_mma_broker.consumer import consumer_config
from tom_mma_broker.gcn import gcn_oauth_config, redacted
from tom_mma_broker.kafka import open_producer
from tom_mma_broker.models import QuarantinedAlert
from tom_mma_broker.streams import ReliableHopskotchAlertStream

LVK = Path(__file__).parent / "data" / "lvk"


def gcn_stream(**options) -> ReliableHopskotchAlertStream:
    return ReliableHopskotchAlertStream(
        URL=options.pop("URL", "kafka://kafka.gcn.nasa.gov"),
        GROUP_ID=options.pop("GROUP_ID", "my-tom"),
        TOPIC_HANDLERS={"gcn.notices.igwn.gwalert": "tom_mma.handlers.lvk.gcn_igwn_gwalert_handler"},
        GCN_CLIENT_ID="my-client-id",
        GCN_CLIENT_SECRET="my-client-secret",
        **options,
    )


@pytest.mark.parametrize("domain", [None, "test.gcn.nasa.gov"])
def test_the_consumer_configuration_is_gcn_kafkas_for_the_same_credentials(domain):
    gcn_kafka = pytest.importorskip("gcn_kafka.core")
    url = f"kafka://kafka.{domain or 'gcn.nasa.gov'}"
    stream = gcn_stream(URL=url, **({"GCN_DOMAIN": domain} if domain else {}))
    ours = consumer_config(url, "my-tom", stream.stream_auth(), "LATEST", extra=stream.oauth_config())
    ours = ours._to_confluent_kafka()
    theirs = gcn_kafka.get_config("consumer", {"group.id": "my-tom"}, client_id="my-client-id",
                                  client_secret="my-client-secret", domain=domain)  # fmt: skip
    assert theirs["sasl.mechanisms"] == "OAUTHBEARER"  # the comparison is about OAuth
    bootstrap = theirs.pop("bootstrap.servers")
    assert ours.pop("bootstrap.servers") in (bootstrap, f"{bootstrap}:9092")
    assert {k: ours.get(k) for k in theirs} == theirs
    assert stream.stream_auth() is False  # no hop SCRAM on top
    assert "my-client-secret" not in json.dumps(redacted(stream.oauth_config()))


def test_gcn_oauth_config_refuses_no_client_id_and_drops_sasl_in_plaintext():
    with pytest.raises(ValueError, match="client id"):
        gcn_oauth_config("")
    assert gcn_oauth_config("id", "secret", security_protocol="plaintext") == {"security.protocol": "plaintext"}
    local = gcn_oauth_config("id", "secret", token_endpoint="http://127.0.0.1:1/t", security_protocol="SASL_PLAINTEXT")
    assert local["sasl.oauthbearer.token.endpoint.url"] == "http://127.0.0.1:1/t" and "ssl.ca.location" not in local


class _TokenEndpoint(BaseHTTPRequestHandler):
    """A loopback stand-in for GCN's OAuth token endpoint (client-credentials grant)."""

    requests: list = []

    def do_POST(self):  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        type(self).requests.append(
            {"path": self.path, "form": parse_qs(body), "auth": self.headers.get("Authorization")}
        )
        token = json.dumps({"access_token": "header.payload.signature", "token_type": "bearer", "expires_in": 3600})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(token.encode())

    def log_message(self, *args):
        pass


@pytest.mark.kafka
def test_librdkafka_fetches_its_token_from_the_token_endpoint(kafka_broker):
    from confluent_kafka import Consumer

    _TokenEndpoint.requests = []
    server = HTTPServer(("127.0.0.1", 0), _TokenEndpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    endpoint = f"http://127.0.0.1:{server.server_port}/oauth2/token"
    stream = gcn_stream(URL=kafka_broker.url, OAUTH_TOKEN_ENDPOINT=endpoint, SECURITY_PROTOCOL="sasl_plaintext")
    config = consumer_config(kafka_broker.url, f"g-{uuid.uuid4().hex[:6]}", False, "EARLIEST",
                             extra=stream.oauth_config())._to_confluent_kafka()  # fmt: skip
    config.pop("error_cb")
    consumer = Consumer({**config, "error_cb": lambda error: None})
    try:
        deadline = time.monotonic() + 20  # librdkafka asks for the token when the client starts
        while not _TokenEndpoint.requests and time.monotonic() < deadline:
            consumer.poll(0.2)
    finally:
        consumer.close()
        server.shutdown()
    assert _TokenEndpoint.requests, "librdkafka did not ask the token endpoint"
    request = _TokenEndpoint.requests[0]
    assert request["path"] == "/oauth2/token" and request["form"]["grant_type"] == ["client_credentials"]
    credentials = base64.b64encode(b"my-client-id:my-client-secret").decode()
    assert request["auth"] == f"Basic {credentials}"


@pytest.mark.kafka
@pytest.mark.django_db(transaction=True)
def test_the_stream_with_gcn_options_reads_in_plaintext_and_commits_after_the_database(kafka_broker, topic, settings):
    settings.TOM_MMA = {"ACCEPT_MOCK_EVENTS": True}
    with open_producer(kafka_broker.url, topic) as producer:  # GCN sends bare JSON, without hop's headers
        for name in ["preliminary", "retraction"]:
            producer.write_raw((LVK / f"MS181101ab-{name}.json").read_bytes(), [], topic=topic)
        producer.write_raw(b'{"superevent_id": "MS181101ab"}', [], topic=topic)
        producer.flush()
    group = f"g-{uuid.uuid4().hex[:8]}"
    options = stream_config(topic, handler="tom_mma.handlers.lvk.gcn_igwn_gwalert_handler", group=group)["OPTIONS"]
    options.update(GCN_CLIENT_ID="my-client-id", GCN_CLIENT_SECRET="my-client-secret", SECURITY_PROTOCOL="plaintext")
    stats = ReliableHopskotchAlertStream(**options).listen(max_messages=3, idle_timeout=15)
    assert stats["handled"] == 2 and stats["quarantined"] == 1
    assert GWEvent.objects.get(superevent_id="MS181101ab").state == "retracted"
    assert QuarantinedAlert.objects.count() == 1
    # the offsets were committed: the same group reads nothing again
    again = ReliableHopskotchAlertStream(**options).listen(idle_timeout=3)
    assert sum(again.values()) == 0
