"""InfluxDB 1.x least privilege over HTTPS: the pipeline's user writes but cannot read, dashboards read but
cannot write, nobody gets in without a user, certificates are verified, and passwords never reach errors."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from citytelemetry.security import SecurityError
from citytelemetry.security.credentials import SecretKey
from citytelemetry.security.influx import Account, InfluxAdmin, InfluxUsers, setup_least_privilege
from citytelemetry.security.tls import LocalPki
from citytelemetry.services import ManagedService, ServiceError, definitions, free_port
from citytelemetry.sink.errors import RetryableWriteError
from citytelemetry.sink.influx_v1 import InfluxV1Writer

pytestmark = pytest.mark.integration
DB = "citytelemetry"


@dataclass(frozen=True, slots=True)
class SecureInflux:
    url: str
    ca_file: Path
    users: InfluxUsers


@pytest.fixture(scope="module")
def secure_influx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureInflux]:
    run_dir = tmp_path_factory.mktemp("secure-influx")
    pki = LocalPki(run_dir / "security" / "tls")
    pki.ensure_server()
    key = SecretKey.create(run_dir / "security" / "secret")
    users = InfluxUsers(*(Account(n, key.password("influx", n)) for n in ("ct_admin", "ct_writer", "ct_reader")))
    spec = definitions.influxd(run_dir, free_port(), auth_enabled=True,
                               tls=definitions.TlsFiles(pki.ca.cert, pki.server.cert, pki.server.key))
    service = ManagedService(spec)
    try:
        service.start()  # readiness is an HTTPS /ping verified against the local CA
    except ServiceError as exc:
        pytest.fail(f"cannot start influxd with auth and TLS: {exc}", pytrace=False)
    try:
        assert service.url.startswith("https://")
        setup_least_privilege(service.url, DB, users, ca_file=pki.ca.cert)
        yield SecureInflux(service.url, pki.ca.cert, users)
    finally:
        service.stop()


def query(influx: SecureInflux, account: Account | None, q: str) -> list[object]:
    return InfluxAdmin(influx.url, account, ca_file=influx.ca_file).query(q, database=DB)


def test_setup_is_idempotent(secure_influx: SecureInflux) -> None:
    setup_least_privilege(secure_influx.url, DB, secure_influx.users, ca_file=secure_influx.ca_file)
    [result] = query(secure_influx, secure_influx.users.admin, "SHOW GRANTS FOR ct_writer")
    assert result == {"statement_id": 0, "series": [{"columns": ["database", "privilege"],
                                                     "values": [[DB, "WRITE"]]}]}


async def test_the_write_only_user_writes_but_cannot_read_or_administer(secure_influx: SecureInflux) -> None:
    # The pipeline's own writer, over https:// verified against the local CA (influx.ca_file).
    writer = InfluxV1Writer(secure_influx.url, DB, username=secure_influx.users.writer.username,
                            password=secure_influx.users.writer.password, ca_file=secure_influx.ca_file)
    try:
        await writer.write([b"probe,device=d v=1i 1000000000"])
    finally:
        await writer.aclose()

    with pytest.raises(SecurityError, match="not authorized") as read:
        query(secure_influx, secure_influx.users.writer, "SELECT * FROM probe")
    assert secure_influx.users.writer.password not in str(read.value)
    with pytest.raises(SecurityError, match="requires admin"):
        query(secure_influx, secure_influx.users.writer, 'CREATE DATABASE "other"')
    [result] = query(secure_influx, secure_influx.users.reader, "SELECT v FROM probe")
    assert result["series"][0]["values"] == [["1970-01-01T00:00:01Z", 1]]  # type: ignore[index]


def test_the_read_only_user_cannot_write(secure_influx: SecureInflux) -> None:
    with pytest.raises(SecurityError, match=r"not authorized|requires"):
        query(secure_influx, secure_influx.users.reader, 'DROP MEASUREMENT "probe"')
    with pytest.raises(SecurityError, match="not authorized"):
        query(secure_influx, secure_influx.users.reader, 'SELECT v INTO "copy" FROM probe')


@pytest.mark.parametrize("who", ["anonymous", "wrong-password"])
def test_no_user_no_access_and_the_password_is_not_echoed(secure_influx: SecureInflux, who: str) -> None:
    account = None if who == "anonymous" else Account("ct_writer", "wrong-" + secure_influx.users.writer.password)
    with pytest.raises(SecurityError, match="401") as refused:
        query(secure_influx, account, "SHOW DATABASES")
    if account is not None:
        assert account.password not in str(refused.value)


def test_https_certificate_is_verified_by_default(secure_influx: SecureInflux, tmp_path: Path) -> None:
    with pytest.raises(SecurityError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        InfluxAdmin(secure_influx.url, secure_influx.users.admin).query("SHOW DATABASES")  # system CAs only
    stranger = LocalPki(tmp_path / "other").ensure_ca()
    with pytest.raises(SecurityError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        InfluxAdmin(secure_influx.url, secure_influx.users.admin, ca_file=stranger.cert).query("SHOW DATABASES")


# aiohttp leaves the socket of a failed handshake to the GC.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_the_pipeline_writer_refuses_an_unverified_certificate_without_echoing_the_password(
        secure_influx: SecureInflux) -> None:
    writer = InfluxV1Writer(secure_influx.url, DB, username="ct_writer", password=secure_influx.users.writer.password)
    try:
        with pytest.raises(RetryableWriteError, match=r"(?i)certificate verify failed") as refused:
            await writer.write([b"probe,device=d v=2i 2000000000"])
    finally:
        await writer.aclose()
    gc.collect()
    assert secure_influx.users.writer.password not in str(refused.value)
