"""The local stack for dev runs and ``citytelemetry services``: broker, database and alertmanager.

The broker runs with a password file and ACLs generated from the inventory (anonymous access off); an
``mqtts://`` broker URL or an ``https://`` InfluxDB URL adds TLS with the local CA's certificate. The files
are (re)written by ``up`` (``prepare=True``) under ``<run_dir>/security/`` (docs/security.md).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from citytelemetry.config import Settings
from citytelemetry.profiles import ProfileError, load_catalog
from citytelemetry.security.errors import SecurityError
from citytelemetry.security.local import prepare_broker, security_dir
from citytelemetry.security.tls import LocalPki
from citytelemetry.services import definitions
from citytelemetry.services.errors import ServiceError
from citytelemetry.services.managed import ManagedService

_LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost"})


def managed_services(settings: Settings, *, prepare: bool = True, anonymous: bool = False) -> list[ManagedService]:
    """The services ``citytelemetry services`` manages, in start order.

    ``prepare`` (re)writes the broker's password and ACL files from the inventory and makes the TLS
    certificates an mqtts:// or https:// URL needs; without it the specs only name those files.
    """
    run_dir = settings.services.run_dir
    mqtt_port = _local_port("mqtt.url", settings.mqtt.url, 1883)
    influx_port = _local_port("influx.url", settings.influx.url, 8086)
    auth, mqtt_tls, influx_tls = _security_files(settings, prepare=prepare, anonymous=anonymous)
    specs = [
        definitions.mosquitto(run_dir, mqtt_port, auth=auth, tls=mqtt_tls),
        definitions.influxd(run_dir, influx_port, tls=influx_tls),
        definitions.alertmanager(run_dir, _local_port("alertmanager.url", settings.alertmanager.url, 9093)),
    ]
    return [ManagedService(spec) for spec in specs]


def _security_files(settings: Settings, *, prepare: bool, anonymous: bool) -> tuple[
        definitions.MosquittoAuth | None, definitions.TlsFiles | None, definitions.TlsFiles | None]:
    directory = security_dir(settings)
    pki = LocalPki(directory / "tls")
    server = definitions.TlsFiles(pki.ca.cert, pki.server.cert, pki.server.key)
    wants_https = urlsplit(settings.influx.url).scheme == "https"
    auth = None if anonymous else definitions.MosquittoAuth(directory / "mosquitto" / "passwd",
                                                             directory / "mosquitto" / "acl")
    if prepare:
        try:
            if auth is not None:
                catalog = load_catalog(settings.pipeline.profiles_dir, settings.pipeline.inventory_dir)
                prepare_broker(settings, catalog, tls=settings.mqtt.tls)
            if settings.mqtt.tls or wants_https:
                pki.ensure_server()
        except (ProfileError, SecurityError, OSError) as exc:
            raise ServiceError(f"cannot prepare the broker's credentials and certificates: {exc}") from exc
    return auth, server if settings.mqtt.tls else None, server if wants_https else None


def _local_port(key: str, url: str, default: int) -> int:
    parts = urlsplit(url)
    if parts.hostname not in _LOCAL_HOSTS:
        raise ServiceError(f"{key} = {url!r} is not on 127.0.0.1; only local services can be managed")
    return parts.port or default
