"""The MQTT source as configured."""

from __future__ import annotations

from citytelemetry.config import MqttSettings
from citytelemetry.ingest.broker import BrokerSource


def open_source(settings: MqttSettings, *, connect_timeout_s: float = 10.0) -> BrokerSource:
    """An unconnected source; ``async with`` it to connect and subscribe."""
    from citytelemetry.ingest.mqtt5_source import Mqtt5Source

    return Mqtt5Source(settings, connect_timeout_s=connect_timeout_s)
