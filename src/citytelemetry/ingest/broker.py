"""What every MQTT source shares: the session contract, its errors, the subscriptions and TLS setup.

``mqtt5_source`` implements ``BrokerSource`` (MQTT 5 and 3.1.1); tests/integration/test_mqtt_sources.py
is the contract suite any implementation must pass. The aiomqtt source was retired (docs/performance.md).
"""

from __future__ import annotations

import enum
import ssl
from collections.abc import Callable
from types import TracebackType
from typing import Protocol, Self

from citytelemetry.config import MqttSettings
from citytelemetry.contracts import InboundMessage, MessageSource
from citytelemetry.topics import subscriptions


class BrokerError(Exception):
    """The broker refused us, or the connection is gone: reconnecting (with backoff) is the remedy."""


class ConnectRefusedError(BrokerError):
    """The broker answered CONNECT with a failure; ``fatal`` when retrying cannot help by itself
    (credentials, authorisation, a ban): ``ingest.watch.ConnectionWatch`` gives up after a few."""

    def __init__(self, message: str, code: str, *, fatal: bool) -> None:
        super().__init__(message)
        self.code = code  # the MQTT 5 reason code's name (a 3.1.1 return code is mapped to it)
        self.fatal = fatal


class SessionTakenOverError(BrokerError):
    """Another client connected with our client id and the broker gave it our session."""


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
    before_write: Callable[[], None] | None  # called before each write to the broker (so before PUBACKs)

    @property
    def version(self) -> str:
        """The MQTT version of the connection: "5" or "3.1.1"."""

    @property
    def in_flight(self) -> int:
        """Messages received on this connection and not yet acknowledged."""

    def take_ready(self, limit: int) -> list[InboundMessage]:
        """Up to ``limit`` received messages without waiting ([] if none); raises ``BrokerError`` once the
        connection is lost. The pump's way in (``messages()`` yields the same, one at a time)."""

    async def wait_ready(self) -> None:
        """Until a message is received or the connection is lost."""

    def check(self) -> None:
        """Raise ``BrokerError`` if the connection was lost."""

    async def publish(self, topic: str, payload: bytes, *, qos: int = 1, timeout_s: float = 5.0) -> None:
        """Publish and, for QoS 1, wait for the broker's PUBACK; raises ``BrokerError``."""

    async def subscribe(self, topic_filters: list[str], *, timeout_s: float | None = None) -> list[tuple[str, str]]:
        """Subscribe (QoS 1) on the open connection; returns the refused filters and the broker's reason."""

    async def unsubscribe(self, topic_filters: list[str], *, timeout_s: float | None = None) -> list[tuple[str, str]]:
        """Unsubscribe on the open connection; returns the refused filters and the broker's reason."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None: ...


# Refused CONNECT, in words: MQTT 5 reason code name -> (what it means for us, fatal?).
_REFUSALS = {
    "BAD_USER_NAME_OR_PASSWORD": ("bad user name or password (mqtt.username / mqtt.password)", True),
    "NOT_AUTHORIZED": ("not authorised: the broker refuses these credentials or this client id", True),
    "BANNED": ("this client is banned by the broker", True),
    "BAD_AUTHENTICATION_METHOD": ("the broker does not accept this authentication method", True),
    "UNSUPPORTED_PROTOCOL_VERSION": (('the broker does not speak MQTT {version} (mqtt.protocol: "5", "3.1.1" '
                                     'or "auto")'), True),
    "CLIENT_ID_NOT_VALID": (("client id {client_id!r} refused (not allowed, or in use where the broker refuses "
                            "a second one): every member needs its own mqtt.client_id"), True),
    "SERVER_UNAVAILABLE": ("the broker is unavailable", False),
    "SERVER_BUSY": ("the broker is busy", False),
    "CONNECTION_RATE_EXCEEDED": ("connecting too often for the broker", False),
    "QUOTA_EXCEEDED": ("a broker quota is exceeded", False),
}


def refusal(settings: MqttSettings, code: str, version: str, detail: str | None = None) -> ConnectRefusedError:
    """The error for a CONNACK failure, naming the broker's reason in words."""
    words, fatal = _REFUSALS.get(code, ("", False))
    text = f"{endpoint(settings)} refused the connection: {code}"
    if words:
        text += f" ({words.format(version=version, client_id=settings.client_id)})"
    if detail:
        text += f": {detail}"
    return ConnectRefusedError(text, code, fatal=fatal)


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
