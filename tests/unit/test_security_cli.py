from __future__ import annotations

import argparse
import io
from pathlib import Path

import pytest

from citytelemetry.cli import security as security_cli
from citytelemetry.config import PipelineSettings, ServicesSettings, Settings
from citytelemetry.security.local import local_credentials

ROOT = Path(__file__).resolve().parents[2]


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="citytelemetry")
    commands = root.add_subparsers(dest="command", required=True)
    commands.add_parser("run")
    security_cli.add_commands(commands)
    return root


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(services=ServicesSettings(run_dir=tmp_path / "run"),
                    pipeline=PipelineSettings(profiles_dir=ROOT / "device_profiles" / "types",
                                              inventory_dir=ROOT / "device_profiles" / "inventory"))


def run(settings: Settings, *argv: str) -> tuple[int | None, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = security_cli.handle(parser().parse_args(argv), settings, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_init_writes_broker_files_and_prints_no_secret(settings: Settings) -> None:
    code, out, _ = run(settings, "security", "init")
    assert code == 0
    run_dir = settings.services.run_dir
    secret = (run_dir / "security" / "secret").read_text().strip()
    creds = local_credentials(settings, create=False)
    for text in (secret, creds.pipeline_password, creds.device("tun-c001-gas1")[1]):
        assert text not in out
    assert "user tun-c001-gas1\n" in (run_dir / "security" / "mosquitto" / "acl").read_text()
    assert run(settings, "security", "init")[1].startswith("kept")


def test_credential_prints_exactly_one_account_and_refuses_unknown_devices(settings: Settings) -> None:
    run(settings, "security", "init")
    creds = local_credentials(settings, create=False)
    code, out, _ = run(settings, "security", "credential", "--device", "tun-c001-gas1")
    assert (code, out) == (0, f"username=tun-c001-gas1\npassword={creds.device('tun-c001-gas1')[1]}\n")
    code, _, err = run(settings, "security", "credential", "--device", "ghost")
    assert code == 1
    assert "not in the inventory" in err


def test_rotate_changes_one_device_password_in_the_password_file(settings: Settings) -> None:
    run(settings, "security", "init")
    before = local_credentials(settings, create=False)
    old_a, old_b = before.device("tun-c001-gas1")[1], before.device("tun-c001-gas2")[1]
    code, out, _ = run(settings, "security", "rotate", "--device", "tun-c001-gas1")
    assert code == 0
    assert "generation 1" in out
    after = local_credentials(settings, create=False)
    assert after.device("tun-c001-gas1")[1] != old_a
    assert after.device("tun-c001-gas2")[1] == old_b


def test_acl_without_init_refuses_instead_of_inventing_a_secret(settings: Settings) -> None:
    code, _, err = run(settings, "security", "acl")
    assert code == 1
    assert "security init" in err


def test_certs_makes_a_ca_a_server_and_client_certificates(settings: Settings) -> None:
    code, out, _ = run(settings, "security", "certs", "--client", "tun-c001-gas1", "--host", "broker.example")
    assert code == 0
    tls = settings.services.run_dir / "security" / "tls"
    assert {p.name for p in tls.iterdir()} >= {"ca.crt", "ca.key", "server.crt", "server.key",
                                                "tun-c001-gas1.crt", "tun-c001-gas1.key"}
    assert "sha256" in out
