"""The security files of a local run directory, and the credentials its clients use.

``services up`` calls ``prepare_broker`` to (re)write the broker's password and ACL files from the
inventory (and, for an ``mqtts://`` URL, the local CA and server certificate). The pipeline, the demo
and the tests call ``local_credentials`` to connect with the accounts those files define:

    creds = local_credentials(settings)
    settings = settings.model_copy(update={"mqtt": creds.pipeline_mqtt(settings.mqtt)})
    user, password = creds.device("tun-c001-gas1")

Layout of ``<run_dir>/security/`` (mode 0700): ``secret`` (0600), ``generations.json``,
``mosquitto/passwd`` (0600), ``mosquitto/acl``, ``tls/`` (see ``tls.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from citytelemetry.config import MqttSettings, Settings
from citytelemetry.profiles import Catalog
from citytelemetry.security.credentials import CredentialSource, write_private
from citytelemetry.security.mosquitto import BrokerAccess, DeviceAccount, password_file
from citytelemetry.security.tls import LocalPki

DEFAULT_PIPELINE_USER = "citytelemetry"
OPERATOR_USER = "ct-operator"  # reads dead letters and status: `mosquitto_sub` for people
GATEWAY_USER = "ct-sim-gateway"  # publishes for every device of the sites: the whole-district simulator


def security_dir(settings: Settings) -> Path:
    return settings.services.run_dir.resolve() / "security"


def pipeline_user(settings: Settings) -> str:
    return settings.mqtt.username or DEFAULT_PIPELINE_USER


@dataclass(frozen=True, slots=True)
class BrokerFiles:
    password_file: Path
    acl_file: Path
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
        return pipeline_user(self._settings)

    @property
    def pipeline_password(self) -> str:
        """``mqtt.password`` if the operator set one, else the derived one."""
        configured = self._settings.mqtt.password
        return configured.get_secret_value() if configured else self.source.service_password(self.pipeline_user)

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
        """``mqtt`` with the pipeline's username, password and (for mqtts://) the local CA filled in."""
        update: dict[str, object] = {"username": self.pipeline_user, "password": SecretStr(self.pipeline_password)}
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
    return BrokerAccess(prefix=settings.mqtt.topic_prefix, pipeline_users=(pipeline_user(settings),),
                        devices=devices, operator_users=(OPERATOR_USER,), gateway_users=(GATEWAY_USER,))


def prepare_broker(settings: Settings, catalog: Catalog, *, tls: bool | None = None) -> BrokerFiles:
    """Write the broker's password and ACL files (and TLS material when ``tls``, default: mqtts:// URL)."""
    directory = security_dir(settings)
    creds = local_credentials(settings)
    access = broker_access(settings, catalog)
    entries = [(creds.pipeline_user, creds.pipeline_password), creds.operator, creds.gateway,
               *(creds.device(d.device_id) for d in access.devices)]
    files = BrokerFiles(directory / "mosquitto" / "passwd", directory / "mosquitto" / "acl", None)
    write_private(files.password_file, password_file(entries))
    write_private(files.acl_file, access.acl())
    if tls if tls is not None else settings.mqtt.tls:
        pki = LocalPki(directory / "tls")
        pki.ensure_server()
        files = BrokerFiles(files.password_file, files.acl_file, pki)
    return files
