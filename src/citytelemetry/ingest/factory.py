"""The MQTT source as configured."""

from __future__ import annotations

from collections.abc import Callable

from citytelemetry.config import MqttSettings
from citytelemetry.ingest.broker import BrokerSource


def open_source(settings: MqttSettings, *, connect_timeout_s: float = 10.0, topic_filters: list[str] | None = None,
                unsubscribe: list[str] | None = None,
                on_refused: Callable[[list[tuple[str, str]]], None] | None = None) -> BrokerSource:
    """An unconnected source; ``async with`` it to connect and subscribe (to ``topic_filters``, by default
    the topic scheme's wildcards; ``unsubscribe``: filters a resumed session must drop). Some filters
    refused at connect are logged and told to ``on_refused`` (topic, reason); all of them fail the connect."""
    from citytelemetry.ingest.mqtt5_source import Mqtt5Source

    return Mqtt5Source(settings, connect_timeout_s=connect_timeout_s, topic_filters=topic_filters,
                       unsubscribe=unsubscribe, on_refused=on_refused)
