"""``citytelemetry services up`` runs the broker locked down by default: inventory credentials and ACLs,
anonymous access off, TLS with the local CA when the URL is mqtts://."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from citytelemetry.cli.services import services_command
from citytelemetry.config import Settings
from citytelemetry.security.local import local_credentials
from citytelemetry.services import free_port

from .conftest import MqttProbeClient
from .pipeline_harness import ROOT

pytestmark = pytest.mark.integration


def _settings(run_dir: Path, scheme: str) -> Settings:
    return Settings(
        mqtt={"url": f"{scheme}://127.0.0.1:{free_port()}"},
        influx={"url": f"http://127.0.0.1:{free_port()}"},
        alertmanager={"url": f"http://127.0.0.1:{free_port()}"},
        services={"run_dir": run_dir},
        pipeline={"profiles_dir": ROOT / "device_profiles" / "types",
                  "inventory_dir": ROOT / "device_profiles" / "inventory"},
    )


@pytest.fixture
def up(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Settings]:
    scheme, anonymous = request.param
    settings = _settings(tmp_path / "run", scheme)
    out, err = io.StringIO(), io.StringIO()
    code = services_command("up", settings, out=out, err=err, anonymous=anonymous)
    try:
        assert code == 0, err.getvalue()
        yield settings
    finally:
        services_command("down", settings, out=io.StringIO(), err=io.StringIO())


def _connect(settings: Settings, username: str | None, password: str | None, ca_file: Path | None) -> str:
    client = MqttProbeClient(settings.mqtt.port, username, password, ca_file=ca_file)
    try:
        return str(client.connect())
    finally:
        client.close()


@pytest.mark.parametrize("up", [("mqtt", False)], indirect=True)
def test_up_locks_the_broker_down_by_default(up: Settings) -> None:
    conf = (up.services.run_dir / "mosquitto" / "mosquitto.conf").read_text().splitlines()
    assert "allow_anonymous false" in conf
    assert "allow_anonymous true" not in conf
    creds = local_credentials(up, create=False)
    assert _connect(up, None, None, None) == "Not authorized"
    assert _connect(up, *creds.device("tun-c001-gas1"), None) == "Success"
    assert _connect(up, creds.pipeline_user, creds.pipeline_password, None) == "Success"
    assert _connect(up, "tun-c001-gas1", creds.device("tun-c001-gas2")[1], None) == "Not authorized"


@pytest.mark.parametrize("up", [("mqtts", False)], indirect=True)
def test_up_with_an_mqtts_url_serves_tls_with_the_local_ca(up: Settings) -> None:
    creds = local_credentials(up, create=False)
    assert creds.ca_file is not None
    assert "cafile " in (up.services.run_dir / "mosquitto" / "mosquitto.conf").read_text()
    assert _connect(up, *creds.device("tun-c001-gas1"), creds.ca_file) == "Success"
    assert creds.pipeline_mqtt(up.mqtt).ca_file == creds.ca_file


@pytest.mark.parametrize("up", [("mqtt", True)], indirect=True)
def test_anonymous_is_an_explicit_opt_out(up: Settings) -> None:
    assert "allow_anonymous true" in (up.services.run_dir / "mosquitto" / "mosquitto.conf").read_text().splitlines()
    assert _connect(up, None, None, None) == "Success"
