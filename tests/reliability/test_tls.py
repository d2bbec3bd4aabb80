"""TLS for real: a CA and a server certificate made at test time, a TLS-terminating proxy.

The development broker speaks plaintext only, so a loopback proxy terminates TLS in
front of it (and the broker advertises the proxy). Certificates come from the
``openssl`` command line tool; the tests are skipped where it is missing.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from qi.base import Failure, Success
from qi.base.streaming import (
    SecurityConfig,
    StreamingConfig,
    StreamingMessage,
    TopicConfig,
    create_streaming_client,
)
from testkit import ok, unique

from ._proxy import ProxiedBroker
from ._scenarios import MARGIN, timed
from ._support import REAL_BACKENDS, backend_params, producer_config_for

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


@dataclass(frozen=True)
class Certificates:
    ca: Path
    """The CA that signed the proxy's certificate."""
    other_ca: Path
    """A CA that signed nothing the proxy shows."""
    server_cert: Path
    server_key: Path


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=60)


def _make_ca(directory: Path, name: str) -> tuple[Path, Path]:
    key, cert = directory / f"{name}.key", directory / f"{name}.pem"
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
        "-days", "1", "-subj", f"/CN={name}",
    )  # fmt: skip
    return key, cert


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    directory = tmp_path_factory.mktemp("tls")
    ca_key, ca = _make_ca(directory, "qi-test-ca")
    _, other_ca = _make_ca(directory, "qi-other-ca")
    server_key, request = directory / "server.key", directory / "server.csr"
    server_cert, extensions = directory / "server.pem", directory / "server.ext"
    extensions.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", server_key, "-out", request,
        "-subj", "/CN=127.0.0.1",
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", request, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
        "-out", server_cert, "-days", "1", "-extfile", extensions,
    )  # fmt: skip
    return Certificates(ca, other_ca, server_cert, server_key)


@pytest.fixture
def tls_broker(certificates: Certificates) -> Iterator[ProxiedBroker]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificates.server_cert, certificates.server_key)
    with ProxiedBroker(tls=context) as cluster:
        yield cluster


def _config(bootstrap: str, ca: Path) -> StreamingConfig:
    return StreamingConfig(
        client_id=unique("tls"),
        brokers=(bootstrap,),
        connection_timeout=3.0,
        request_timeout=5.0,
        security=SecurityConfig(ssl=True, ssl_ca_file=str(ca)),
    )


@pytest.mark.parametrize("backend", backend_params(tuple(sorted(REAL_BACKENDS))))
async def test_clients_produce_over_tls_with_the_right_ca(
    backend: str, tls_broker: ProxiedBroker, certificates: Certificates
) -> None:
    config = _config(tls_broker.bootstrap, certificates.ca)
    async with create_streaming_client(backend, config) as client:
        admin = ok(await client.get_admin())
        topic = unique("tls")
        ok(await admin.create_topics([TopicConfig(topic)]))
        producer = ok(await client.get_producer(producer_config_for(backend)))
        sent = await producer.send(topic, StreamingMessage(b"over tls"))
        assert isinstance(sent, Success), sent
        assert await client.is_healthy() == Success(True)
    assert tls_broker.proxy.accepted >= 1


@pytest.mark.parametrize("backend", backend_params(tuple(sorted(REAL_BACKENDS))))
async def test_a_wrong_ca_is_rejected_with_a_clear_error_not_a_hang(
    backend: str, tls_broker: ProxiedBroker, certificates: Certificates
) -> None:
    config = _config(tls_broker.bootstrap, certificates.other_ca)
    async with create_streaming_client(backend, config) as client:
        for name, call in (("get_producer", client.get_producer), ("get_admin", client.get_admin)):
            result, seconds = await timed(call())
            assert isinstance(result, Failure), f"{name} trusted a certificate it should not"
            error = result.error
            assert error.code in (
                "STREAMING_CONNECTION_FAILED",
                "STREAMING_AUTHENTICATION_FAILED",
            ), error
            assert "certificate" in error.message.lower(), f"{name}: {error.message}"
            assert seconds <= config.connection_timeout + MARGIN, f"{name} took {seconds:.1f}s"
        assert await client.is_healthy() == Success(False)
