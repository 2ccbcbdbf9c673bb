"""What every MQTT source shares: the session contract, its errors, the subscriptions and TLS setup.

Two implementations sit behind ``BrokerSource`` (``mqtt.client`` picks one): ``mqtt5_source`` (the
default, on the ``mqtt5`` packet codec) and ``aiomqtt_source`` (aiomqtt on paho-mqtt).
"""

from __future__ import annotations

import enum
import ssl
from types import TracebackType
from typing import Protocol, Self

from citytelemetry.config import MqttSettings
from citytelemetry.contracts import MessageSource
from citytelemetry.topics import subscriptions


class BrokerError(Exception):
    """The broker refused us, or the connection is gone: reconnecting (with backoff) is the remedy."""


class SourceState(enum.Enum):
    NEW = "new"
    CONNECTED = "connected"
    CLOSED = "closed"


class BrokerSource(MessageSource, Protocol):
    """One connection = one attachment to the persistent session; re-create it to reconnect.

    Entering connects and subscribes; leaving sends the acknowledgements already due and disconnects,
    keeping the session. ``messages()`` raises ``BrokerError`` when the connection is lost.
    """

    state: SourceState

    @property
    def in_flight(self) -> int:
        """Messages received on this connection and not yet acknowledged."""

    async def publish(self, topic: str, payload: bytes, *, qos: int = 1, timeout_s: float = 5.0) -> None:
        """Publish and, for QoS 1, wait for the broker's PUBACK; raises ``BrokerError``."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None: ...


def filters(settings: MqttSettings) -> list[str]:
    """Subscription filters, as a shared subscription when a group is configured."""
    base = subscriptions(settings.topic_prefix)
    if settings.shared_group:
        return [f"$share/{settings.shared_group}/{f}" for f in base]
    return base


def tls_context(settings: MqttSettings) -> ssl.SSLContext | None:
    """Verification is always on: the system CAs, or ``ca_file`` for a private CA."""
    if not settings.tls:
        return None
    return ssl.create_default_context(cafile=str(settings.ca_file) if settings.ca_file else None)


def endpoint(settings: MqttSettings) -> str:
    """host:port for logs and errors (never the credentials a URL may carry)."""
    return f"{settings.host}:{settings.port}"
