from __future__ import annotations

import base64
import stat
import subprocess
from pathlib import Path

import pytest

from citytelemetry.config import Settings
from citytelemetry.security import (
    BrokerAccess,
    CredentialSource,
    DeviceAccount,
    InsecureFileError,
    SecretKey,
    SecurityError,
    hash_password,
    password_file,
)
from citytelemetry.security.influx import Account, quote_identifier, quote_string
from citytelemetry.security.local import local_credentials, pipeline_members
from citytelemetry.security.mosquitto import expand_members, listener_access


def test_secret_file_is_created_private_and_loads_back(tmp_path: Path) -> None:
    path = tmp_path / "security" / "secret"
    created = SecretKey.create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert SecretKey.load(path).password("r", "n") == created.password("r", "n")
    with pytest.raises(SecurityError, match="exists"):
        SecretKey.create(path)


def test_a_secret_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    SecretKey.create(path)
    path.chmod(0o644)
    with pytest.raises(InsecureFileError, match="chmod 600"):
        SecretKey.load(path)


def test_passwords_are_deterministic_distinct_and_256_bit() -> None:
    key = SecretKey(b"k" * 32)
    a = key.password("mqtt-device", "tun-c001-gas1")
    assert a == SecretKey(b"k" * 32).password("mqtt-device", "tun-c001-gas1")
    assert len(base64.urlsafe_b64decode(a + "=")) == 32
    others = {key.password("mqtt-device", "tun-c001-gas2"), key.password("mqtt-service", "tun-c001-gas1"),
              key.password("mqtt-device", "tun-c001-gas1", 1), SecretKey(b"j" * 32).password("mqtt-device",
                                                                                              "tun-c001-gas1")}
    assert a not in others
    assert len(others) == 4


def test_the_key_never_shows_in_reprs(tmp_path: Path) -> None:
    source = CredentialSource.open(tmp_path)
    secret_hex = (tmp_path / "secret").read_text().strip()
    assert secret_hex not in repr(source)
    assert secret_hex not in repr(source.key)
    assert "hunter2" not in repr(Account("ct_writer", "hunter2"))


def test_rotating_one_device_changes_only_its_password(tmp_path: Path) -> None:
    source = CredentialSource.open(tmp_path)
    before = {d: source.device_password(d) for d in ("a", "b")}
    source.generations.bump("mqtt-device", "a")
    source.generations.save()
    reopened = CredentialSource.open(tmp_path, create=False)
    assert reopened.device_password("a") != before["a"]
    assert reopened.device_password("b") == before["b"]


def test_hash_matches_mosquitto_passwd(tmp_path: Path) -> None:
    passwd = tmp_path / "pw"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(passwd), "dev", "s3cret-pw"], check=True)
    line = passwd.read_text().strip()
    salt = base64.b64decode(line.split("$")[3])
    assert f"dev:{hash_password('s3cret-pw', salt=salt)}" == line


def test_password_file_has_one_salted_line_per_account() -> None:
    text = password_file([("a", "pw"), ("b", "pw")])
    lines = text.splitlines()
    assert [line.split(":")[0] for line in lines] == ["a", "b"]
    assert lines[0].split(":")[1] != lines[1].split(":")[1]  # same password, different salt


def test_acl_binds_each_device_to_its_own_two_topics() -> None:
    access = BrokerAccess(prefix="ct/v1", pipeline_users=("citytelemetry",), operator_users=("ct-operator",),
                          devices=(DeviceAccount("tun-c001-gas1", "hunnan", "tunnel"),))
    acl = access.acl()
    device_block = acl.split("user tun-c001-gas1\n")[1].strip().splitlines()
    assert device_block == ["topic write ct/v1/hunnan/tunnel/tun-c001-gas1/telemetry",
                            "topic write ct/v1/hunnan/tunnel/tun-c001-gas1/status"]
    pipeline_block = acl.split("user citytelemetry\n")[1].split("\n\n")[0].splitlines()
    assert pipeline_block == ["topic read ct/v1/+/+/+/telemetry", "topic read $share/+/ct/v1/+/+/+/telemetry",
                              "topic read ct/v1/+/+/+/status", "topic read $share/+/ct/v1/+/+/+/status",
                              "topic write ct/v1/deadletter/#"]
    peers_block = acl.split("user citytelemetry-peers\n")[1].split("\n\n")[0].splitlines()
    assert peers_block == ["topic read ct/v1/members/#", "topic write ct/v1/members/#"]
    assert "pattern" not in acl
    assert "readwrite" not in acl


@pytest.mark.parametrize("bad", ["a\nuser root", "a b", "a/b", "+", "#", "a:b", "", "-a", "a" * 65])
def test_names_that_could_change_a_generated_file_are_refused(bad: str) -> None:
    with pytest.raises(SecurityError):
        BrokerAccess(prefix="ct/v1", pipeline_users=("p",), devices=(DeviceAccount(bad, "s", "tunnel"),)).acl()
    with pytest.raises(SecurityError):
        password_file([(bad, "x")])


def test_a_device_id_equal_to_a_service_account_is_refused() -> None:
    with pytest.raises(SecurityError, match="twice"):
        BrokerAccess(prefix="ct/v1", pipeline_users=("citytelemetry",),
                     devices=(DeviceAccount("citytelemetry", "s", "tunnel"),))


def test_influxql_quoting_cannot_be_escaped() -> None:
    assert quote_identifier('a"b\\') == '"a\\"b\\\\"'
    assert quote_string("it's\\") == "'it\\'s\\\\'"
    with pytest.raises(SecurityError):
        Account('x"; DROP DATABASE db', "pw")


def test_pipeline_members_expand_from_a_list_and_ranges() -> None:
    assert expand_members(["citytelemetry-{1..3}", "ct-backfill", "p{9..10}x"]) == [
        "citytelemetry-1", "citytelemetry-2", "citytelemetry-3", "ct-backfill", "p9x", "p10x"]
    # the partitioned units' client ids: citytelemetry@0-4.service is citytelemetry-0-4
    assert expand_members(["citytelemetry-{0..3}-4"]) == [f"citytelemetry-{k}-4" for k in range(4)]
    for bad in ("ct-{3..1}", "ct-{1..900}", "ct-{1..2}-{1..2}", "ct/{1..2}", "a b"):
        with pytest.raises(SecurityError):
            expand_members([bad])


def test_every_member_gets_its_own_account_named_by_its_client_id(tmp_path: Path) -> None:
    settings = Settings(services={"run_dir": tmp_path}, mqtt={"client_id": "citytelemetry-2",
                                                             "members": ["citytelemetry-{1..3}"]})
    assert pipeline_members(settings) == ("citytelemetry-2", "citytelemetry-1", "citytelemetry-3")
    creds = local_credentials(settings)
    assert creds.pipeline_user == "citytelemetry-2"
    other = creds.pipeline_mqtt(settings.mqtt.model_copy(update={"client_id": "citytelemetry-3"}))
    assert other.username == "citytelemetry-3"
    assert other.password is not None
    assert other.password.get_secret_value() == creds.member("citytelemetry-3")[1] != creds.pipeline_password


def test_the_listener_lines_bind_client_ids_to_usernames() -> None:
    lines = listener_access(Path("/s/passwd"), Path("/s/acl")).splitlines()
    assert lines == ["allow_anonymous false", "password_file /s/passwd", "acl_file /s/acl",
                     "use_username_as_clientid true"]
