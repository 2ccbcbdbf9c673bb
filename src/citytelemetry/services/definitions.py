"""The four services we run locally, each bound to 127.0.0.1 under ``<run_dir>/<name>/``.

Config templates live in the repository's ``deploy/`` directory (see deploy/README.md).
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path

from citytelemetry.services.ports import LOOPBACK, free_port
from citytelemetry.services.probes import HttpProbe, TcpProbe
from citytelemetry.services.spec import ConfigFile, ServiceSpec

DEPLOY_DIR = Path(__file__).resolve().parents[3] / "deploy"


def mosquitto(run_dir: Path, port: int, *, templates: Path = DEPLOY_DIR) -> ServiceSpec:
    home = run_dir.resolve() / "mosquitto"
    config = home / "mosquitto.conf"
    variables = {
        "port": str(port),
        "data_dir": str(home / "data"),
        "log_file": str(home / "mosquitto.log"),
        "user": pwd.getpwuid(os.getuid()).pw_name,  # as root it would otherwise drop to `mosquitto`
    }
    return ServiceSpec(
        name="mosquitto",
        binary="mosquitto",
        args=("-c", str(config)),
        home=home,
        marker=config,
        url=f"mqtt://{LOOPBACK}:{port}",
        ports=(port,),
        probe=TcpProbe(LOOPBACK, port),
        files=(ConfigFile(templates / "mosquitto.conf.template", config, variables),),
        dirs=(home / "data",),
    )


def influxd(run_dir: Path, port: int, *, rpc_port: int | None = None, templates: Path = DEPLOY_DIR) -> ServiceSpec:
    home = run_dir.resolve() / "influxd"
    config = home / "influxdb.conf"
    rpc = rpc_port if rpc_port is not None else free_port()
    variables = {"port": str(port), "rpc_port": str(rpc), "data_dir": str(home / "data")}
    return ServiceSpec(
        name="influxd",
        binary="influxd",
        args=("run", "-config", str(config)),
        home=home,
        marker=config,
        url=f"http://{LOOPBACK}:{port}",
        ports=(port, rpc),
        probe=HttpProbe(LOOPBACK, port, "/ping", status=204),
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
