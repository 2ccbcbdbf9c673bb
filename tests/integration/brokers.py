"""Brokers other than mosquitto for the MQTT source contract suite: NATS's MQTT listener (3.1.1 only).

Debian's ``nats-server`` (scripts/install) speaks MQTT 3.1.1 and nothing newer: it answers an MQTT 5
CONNECT with the 3.1.1 return code 1 (unacceptable protocol version), which is what ``mqtt.protocol =
"auto"`` falls back on. Its own client port is a free port too: the machine's NATS (4222) is never used.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from citytelemetry.services import ServiceSpec, free_port
from citytelemetry.services.ports import LOOPBACK
from citytelemetry.services.probes import TcpProbe
from citytelemetry.services.spec import ConfigFile
from tests.conftest import MqttBroker, _serve

TEMPLATE = Path(__file__).with_name("nats-mqtt.conf.template")


def nats_mqtt_spec(run_dir: Path, mqtt_port: int) -> ServiceSpec:
    home = run_dir.resolve() / f"nats-mqtt-{mqtt_port}"
    config = home / "nats.conf"
    client_port = free_port()
    variables = {"mqtt_port": str(mqtt_port), "client_port": str(client_port), "store_dir": str(home / "js")}
    return ServiceSpec(
        name="nats-server",
        binary="nats-server",
        args=("-c", str(config)),
        home=home,
        marker=config,
        url=f"mqtt://{LOOPBACK}:{mqtt_port}",
        ports=(mqtt_port, client_port),
        probe=TcpProbe(LOOPBACK, mqtt_port),
        files=(ConfigFile(TEMPLATE, config, variables),),
        dirs=(home / "js",),
    )


@pytest.fixture(scope="session")
def nats_mqtt(services_dir: Path) -> Iterator[MqttBroker]:
    """NATS with its MQTT listener on a free port: an MQTT 3.1.1-only broker."""
    with _serve(nats_mqtt_spec(services_dir, free_port())) as service:
        yield MqttBroker(LOOPBACK, service.spec.port)
