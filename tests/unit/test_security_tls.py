from __future__ import annotations

import contextlib
import ssl
import stat
import subprocess
from pathlib import Path

import pytest

from citytelemetry.security import SecurityError, ToolError
from citytelemetry.security.tls import LocalPki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> LocalPki:
    pki = LocalPki(tmp_path_factory.mktemp("pki") / "tls")
    pki.ensure_server(("broker.local",))
    pki.issue("tun-c001-gas1", client=True)
    return pki


def _text(cert: Path) -> str:
    return subprocess.run(["openssl", "x509", "-in", str(cert), "-noout", "-text"], capture_output=True, text=True,
                          check=True).stdout


def test_keys_are_private_and_certificates_chain_to_the_ca(pki: LocalPki) -> None:
    assert stat.S_IMODE(pki.directory.stat().st_mode) == 0o700
    for key in (pki.ca.key, pki.server.key, pki.pair("tun-c001-gas1").key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    pki.verify(pki.server.cert)
    pki.verify(pki.pair("tun-c001-gas1").cert)


def test_server_certificate_names_the_local_hosts_and_is_for_servers_only(pki: LocalPki) -> None:
    text = _text(pki.server.cert)
    assert "DNS:localhost" in text
    assert "IP Address:127.0.0.1" in text
    assert "DNS:broker.local" in text
    assert "TLS Web Server Authentication" in text
    assert "CA:FALSE" in text
    assert "TLS Web Client Authentication" in _text(pki.pair("tun-c001-gas1").cert)


def test_python_ssl_accepts_the_server_certificate_with_the_ca(pki: LocalPki) -> None:
    context = ssl.create_default_context(cafile=str(pki.ca.cert))
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(str(pki.server.cert), str(pki.server.key))
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    srv = server.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(10):
        for side in (client, srv):
            with contextlib.suppress(ssl.SSLWantReadError):
                side.do_handshake()
        s_in.write(outgoing.read())
        incoming.write(s_out.read())
    assert client.version() is not None


def test_ensure_is_idempotent_and_renew_issues_a_new_certificate(pki: LocalPki) -> None:
    before = pki.server.cert.read_bytes()
    pki.ensure_server(("broker.local",))
    assert pki.server.cert.read_bytes() == before
    pki.ensure_server(("broker.local",), renew=True)
    assert pki.server.cert.read_bytes() != before
    pki.verify(pki.server.cert)


def test_a_certificate_of_another_ca_does_not_verify(pki: LocalPki, tmp_path: Path) -> None:
    other = LocalPki(tmp_path / "other")
    other.ensure_server()
    with pytest.raises(ToolError, match="verif"):
        pki.verify(other.server.cert)


@pytest.mark.parametrize("name", ["../x", "a b", "a/b", ""])
def test_bad_certificate_names_are_refused(pki: LocalPki, name: str) -> None:
    with pytest.raises(SecurityError):
        pki.issue(name)
