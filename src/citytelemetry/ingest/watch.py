"""What one connection cannot tell: a refusal that retrying will not cure, and a client id used twice.

The reconnect loop reports every connection to a ``ConnectionWatch``. Two patterns span connections:

- The broker refuses our credentials (bad user name or password, not authorised, banned, unsupported
  protocol): retrying forever only fills the log. After ``refusals`` such refusals in a row the watch
  raises ``BrokerGaveUpError`` and the process stops with the broker's reason, so a supervisor shows
  the failure instead of a healthy-looking process that ingests nothing.
- Another client connects with our client id (a config copied to a second host): the broker hands it
  our session and drops us, we reconnect and drop it, about once a second, forever, and half of every
  device's messages go to the other process. MQTT 5 says so (DISCONNECT 0x8E, ``SessionTakenOverError``);
  MQTT 3.1.1 brokers just close the older connection, so ``closes`` connections in a row that the
  broker closed within ``short_s`` of connecting are reported as a probable takeover.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from citytelemetry.ingest.broker import BrokerError, ConnectRefusedError, SessionTakenOverError

REFUSALS = 3  # fatal refusals in a row before giving up (one may be a broker still loading its ACLs)
CLOSES = 3  # broker closes in a row, each soon after connecting, before reporting a probable takeover
SHORT_S = 5.0


class BrokerGaveUpError(Exception):
    """The broker keeps refusing us for a reason retrying cannot cure: the process must stop."""


class ConnectionWatch:
    __slots__ = ("_clock", "_closes", "_connected_at", "_refusals", "client_id", "closes", "refusals",
                 "short_s", "takeovers")

    def __init__(self, client_id: str, *, refusals: int = REFUSALS, closes: int = CLOSES,
                 short_s: float = SHORT_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.client_id = client_id
        self.refusals, self.closes, self.short_s = refusals, closes, short_s
        self._clock = clock
        self._refusals = self._closes = 0
        self._connected_at: float | None = None
        self.takeovers = 0  # takeovers reported (for /metrics)

    def connected(self) -> None:
        """A connection is up (CONNACK accepted, subscribed)."""
        self._refusals = 0
        self._connected_at = self._clock()

    def ended(self, error: BrokerError) -> str | None:
        """A connection failed or ended with ``error``. Returns a takeover report to log loudly, or None;
        raises ``BrokerGaveUpError`` on the ``refusals``-th fatal refusal in a row."""
        connected_at, self._connected_at = self._connected_at, None
        if isinstance(error, ConnectRefusedError):
            self._closes = 0
            if not error.fatal:
                return None
            self._refusals += 1
            if self._refusals >= self.refusals:
                raise BrokerGaveUpError(f"{error}; refused {self._refusals} times in a row, giving up")
            return None
        if isinstance(error, SessionTakenOverError):
            self._closes = 0
            return self._takeover(f"{error}")
        if connected_at is None:  # no connection was made (broker down, network): not a takeover
            return None
        self._closes = self._closes + 1 if self._clock() - connected_at < self.short_s else 0
        if self._closes >= self.closes:
            self._closes = 0
            return self._takeover(f"the broker closed our connection within {self.short_s:g} s of "
                                  f"connecting, {self.closes} times in a row (last: {error})")
        return None

    def _takeover(self, what: str) -> str:
        self.takeovers += 1
        return (f"{what}: another client is probably connected with our client id {self.client_id!r}, and "
                "the two knock each other off; each process needs its own mqtt.client_id")
