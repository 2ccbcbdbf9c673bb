"""The four services we run locally, each bound to 127.0.0.1 under ``<run_dir>/<name>/``.

Config templates live in the repository's ``deploy/`` directory (see deploy/README.md). Access control
and TLS are opt-in here (``MosquittoAuth``, ``TlsFiles``, ``auth_enabled``) so that test fixtures keep an
open broker; ``services up`` turns them on (docs/security.md).
"""

from __future__ import annotations

import http.client
import os
import pwd
import ssl
from dataclasses import dataclass
from pathlib import Path

from citytelemetry.security.mosquitto import listener_access
from citytelemetry.services.ports import LOOPBACK, free_port
from citytelemetry.services.probes import HttpProbe, TcpProbe, answers
from citytelemetry.services.spec import ConfigFile, ServiceSpec

DEPLOY_DIR = Path(__file__).resolve().parents[3] / "deploy"


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """A server's certificate and key, and the CA that clients verify it with."""

    ca_file: Path
    cert_file: Path
    key_file: Path


@dataclass(frozen=True, slots=True)
class MosquittoAuth:
    """Password and ACL files (``citytelemetry.security`` writes them); anonymous access goes off."""

    password_file: Path
    acl_file: Path


class TlsHttpProbe:
    """Ready when ``GET https://host:port/path`` answers ``status`` over TLS verified against ``ca_file``."""

    __slots__ = ("ca_file", "host", "path", "port", "status", "timeout")

    def __init__(self, host: str, port: int, path: str, ca_file: Path, status: int = 200,
                 timeout: float = 1.0) -> None:
        self.host, self.port, self.path, self.ca_file = host, port, path, ca_file
        self.status, self.timeout = status, timeout

    def __call__(self) -> bool:
        try:
            context = ssl.create_default_context(cafile=str(self.ca_file))
        except OSError:
            return False
        conn = http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout, context=context)
        return answers(conn, self.path, self.status)


def _mosquitto_access(auth: MosquittoAuth | None) -> str:
    if auth is None:
        return "allow_anonymous true"
    return listener_access(auth.password_file, auth.acl_file)  # also binds each client id to its account


def _mosquitto_tls(tls: TlsFiles | None) -> str:
    if tls is None:
        return ""
    return f"cafile {tls.ca_file}\ncertfile {tls.cert_file}\nkeyfile {tls.key_file}\n"


def mosquitto(run_dir: Path, port: int, *, templates: Path = DEPLOY_DIR, auth: MosquittoAuth | None = None,
              tls: TlsFiles | None = None) -> ServiceSpec:
    """The broker; anonymous unless ``auth`` is given, plain MQTT unless ``tls`` is given."""
    home = run_dir.resolve() / "mosquitto"
    config = home / "mosquitto.conf"
    variables = {
        "port": str(port),
        "data_dir": str(home / "data"),
        "log_file": str(home / "mosquitto.log"),
        "user": pwd.getpwuid(os.getuid()).pw_name,  # as root it would otherwise drop to `mosquitto`
        "access": _mosquitto_access(auth),
        "tls": _mosquitto_tls(tls),
    }
    return ServiceSpec(
        name="mosquitto",
        binary="mosquitto",
        args=("-c", str(config)),
        home=home,
        marker=config,
        url=f"{'mqtts' if tls else 'mqtt'}://{LOOPBACK}:{port}",
        ports=(port,),
        probe=TcpProbe(LOOPBACK, port),
        files=(ConfigFile(templates / "mosquitto.conf.template", config, variables),),
        dirs=(home / "data",),
    )


def influxd(run_dir: Path, port: int, *, rpc_port: int | None = None, templates: Path = DEPLOY_DIR,
            auth_enabled: bool = False, tls: TlsFiles | None = None) -> ServiceSpec:
    """InfluxDB 1.x; ``auth_enabled`` needs users (``citytelemetry.security.influx``), ``tls`` serves HTTPS."""
    home = run_dir.resolve() / "influxd"
    config = home / "influxdb.conf"
    rpc = rpc_port if rpc_port is not None else free_port()
    variables = {"port": str(port), "rpc_port": str(rpc), "data_dir": str(home / "data"),
                 "auth_enabled": "true" if auth_enabled else "false",
                 "https_enabled": "true" if tls else "false",
                 "https_certificate": str(tls.cert_file) if tls else "",
                 "https_private_key": str(tls.key_file) if tls else ""}
    probe = (TlsHttpProbe(LOOPBACK, port, "/ping", tls.ca_file, status=204) if tls
             else HttpProbe(LOOPBACK, port, "/ping", status=204))
    return ServiceSpec(
        name="influxd",
        binary="influxd",
        args=("run", "-config", str(config)),
        home=home,
        marker=config,
        url=f"{'https' if tls else 'http'}://{LOOPBACK}:{port}",
        ports=(port, rpc),
        probe=probe,
        files=(ConfigFile(templates / "influxdb.conf.template", config, variables),),
        dirs=(home / "data",),
        drop_env_prefixes=("INFLUXDB_",),  # influxd reads INFLUXDB_* as config overrides
    )


def alertmanager(run_dir: Path, port: int, *, templates: Path = DEPLOY_DIR) -> ServiceSpec:
    home = run_dir.resolve() / "alertmanager"
    config = home / "alertmanager.yml"
    return ServiceSpec(
        name="alertmanager",
        binary="prometheus-alertmanager",
        args=(
            f"--config.file={config}",
            f"--storage.path={home / 'data'}",
            f"--web.listen-address={LOOPBACK}:{port}",
            "--cluster.listen-address=",  # empty: no HA gossip, no second port
        ),
        home=home,
        marker=config,
        url=f"http://{LOOPBACK}:{port}",
        ports=(port,),
        probe=HttpProbe(LOOPBACK, port, "/-/ready"),
        files=(ConfigFile(templates / "alertmanager.yml", config),),
        dirs=(home / "data",),
    )


def victoria_metrics(run_dir: Path, port: int, *, retention: str = "1y") -> ServiceSpec:
    home = run_dir.resolve() / "victoria-metrics"
    data = home / "data"
    return ServiceSpec(
        name="victoria-metrics",
        binary="victoria-metrics",
        args=(f"-storageDataPath={data}", f"-httpListenAddr={LOOPBACK}:{port}", f"-retentionPeriod={retention}"),
        home=home,
        marker=data,  # no config file: the data path identifies the instance
        url=f"http://{LOOPBACK}:{port}",
        ports=(port,),
        probe=HttpProbe(LOOPBACK, port, "/health"),
        dirs=(data,),
    )
