"""The security files of a local run directory, and the credentials its clients use.

``services up`` calls ``prepare_broker`` to (re)write the broker's password and ACL files from the
inventory (and, for an ``mqtts://`` URL, the local CA and server certificate). The pipeline, the demo
and the tests call ``local_credentials`` to connect with the accounts those files define:

    creds = local_credentials(settings)
    settings = settings.model_copy(update={"mqtt": creds.pipeline_mqtt(settings.mqtt)})
    user, password = creds.device("tun-c001-gas1")

Every account's username is also its client id at the broker (``use_username_as_clientid``, see
mosquitto.py): a pipeline member's account is named by its ``mqtt.client_id``, one per member.

Layout of ``<run_dir>/security/`` (mode 0700): ``secret`` (0600), ``generations.json``,
``mosquitto/passwd`` (0600), ``mosquitto/acl``, ``mosquitto/listener.conf``, ``tls/`` (see ``tls.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from citytelemetry.config import MqttSettings, Settings
from citytelemetry.profiles import Catalog
from citytelemetry.security.credentials import CredentialSource, write_private
from citytelemetry.security.mosquitto import (
    BrokerAccess,
    DeviceAccount,
    expand_members,
    listener_access,
    password_file,
    peer_user,
)
from citytelemetry.security.tls import LocalPki

OPERATOR_USER = "ct-operator"  # reads dead letters and status: `mosquitto_sub` for people
GATEWAY_USER = "ct-sim-gateway"  # publishes for every device of the sites: the whole-district simulator


def security_dir(settings: Settings) -> Path:
    return settings.services.run_dir.resolve() / "security"


def pipeline_user(mqtt: MqttSettings) -> str:
    """The member's broker account: ``mqtt.username``, else its client id (the broker's id for it anyway)."""
    return mqtt.username or mqtt.client_id


def pipeline_members(settings: Settings) -> tuple[str, ...]:
    """Every pipeline member's account: ``mqtt.members`` expanded, always with this instance's own."""
    own = pipeline_user(settings.mqtt)
    members = expand_members(settings.mqtt.members)
    return tuple(dict.fromkeys([own, *members]))


@dataclass(frozen=True, slots=True)
class BrokerFiles:
    password_file: Path
    acl_file: Path
    listener_conf: Path  # the lines a listener needs: for operators who run their own mosquitto.conf
    pki: LocalPki | None  # set when the broker listens with TLS


class LocalCredentials:
    """Every local MQTT account's credential, derived on demand; the repr shows no secret."""

    __slots__ = ("_settings", "ca_file", "source")

    def __init__(self, settings: Settings, source: CredentialSource, ca_file: Path | None) -> None:
        self._settings = settings
        self.source = source
        self.ca_file = ca_file

    def __repr__(self) -> str:
        return f"LocalCredentials(pipeline_user={self.pipeline_user!r}, ca_file={self.ca_file!s})"

    @property
    def pipeline_user(self) -> str:
        return pipeline_user(self._settings.mqtt)

    @property
    def pipeline_password(self) -> str:
        """``mqtt.password`` if the operator set one, else the derived one."""
        return self.member(self.pipeline_user)[1]

    def member(self, username: str) -> tuple[str, str]:
        """(username, password) of a pipeline member; ``mqtt.password`` is this instance's own if set."""
        configured = self._settings.mqtt.password
        if configured and username == self.pipeline_user:
            return username, configured.get_secret_value()
        return username, self.source.service_password(username)

    @property
    def operator(self) -> tuple[str, str]:
        return OPERATOR_USER, self.source.service_password(OPERATOR_USER)

    @property
    def gateway(self) -> tuple[str, str]:
        return GATEWAY_USER, self.source.service_password(GATEWAY_USER)

    def device(self, device_id: str) -> tuple[str, str]:
        """(username, password) of a device: the username is the device id."""
        return device_id, self.source.device_password(device_id)

    def pipeline_mqtt(self, mqtt: MqttSettings) -> MqttSettings:
        """``mqtt`` with its member's username, password and (for mqtts://) the local CA filled in."""
        username, password = self.member(pipeline_user(mqtt))
        update: dict[str, object] = {"username": username, "password": SecretStr(password)}
        if mqtt.tls and mqtt.ca_file is None and self.ca_file is not None:
            update["ca_file"] = self.ca_file
        return mqtt.model_copy(update=update)


def local_credentials(settings: Settings, *, create: bool = True) -> LocalCredentials:
    """The credentials of the accounts ``prepare_broker`` writes (creating the secret if asked)."""
    directory = security_dir(settings)
    pki = LocalPki(directory / "tls")
    ca_file = pki.ca.cert if pki.ca.cert.exists() else None
    return LocalCredentials(settings, CredentialSource.open(directory, create=create), ca_file)


def broker_access(settings: Settings, catalog: Catalog) -> BrokerAccess:
    devices = tuple(DeviceAccount(d.id, d.site, d.system.value) for d in sorted(catalog.devices.values(),
                                                                                   key=lambda d: d.id))
    return BrokerAccess(prefix=settings.mqtt.topic_prefix, pipeline_users=pipeline_members(settings),
                        devices=devices, operator_users=(OPERATOR_USER,), gateway_users=(GATEWAY_USER,))


def prepare_broker(settings: Settings, catalog: Catalog, *, tls: bool | None = None) -> BrokerFiles:
    """Write the broker's password and ACL files and the listener lines that enforce them (and TLS
    material when ``tls``, default: mqtts:// URL)."""
    directory = security_dir(settings)
    creds = local_credentials(settings)
    access = broker_access(settings, catalog)
    members = [creds.member(user) for user in access.pipeline_users]
    peers = [(peer_user(user), password) for user, password in members]  # same secret, its own account
    entries = [*members, *peers, creds.operator, creds.gateway,
               *(creds.device(d.device_id) for d in access.devices)]
    home = directory / "mosquitto"
    files = BrokerFiles(home / "passwd", home / "acl", home / "listener.conf", None)
    write_private(files.password_file, password_file(entries))
    write_private(files.acl_file, access.acl())
    write_private(files.listener_conf, listener_access(files.password_file, files.acl_file) + "\n")
    if tls if tls is not None else settings.mqtt.tls:
        pki = LocalPki(directory / "tls")
        pki.ensure_server()
        files = BrokerFiles(files.password_file, files.acl_file, files.listener_conf, pki)
    return files
