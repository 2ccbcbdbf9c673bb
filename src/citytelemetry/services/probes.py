"""Readiness probes: one cheap, bounded check each; ``True`` once the service answers."""

from __future__ import annotations

import http.client
import socket
from typing import Protocol


class Probe(Protocol):
    """Asks a service once whether it is ready; never raises for a service that is not (yet) up."""

    def __call__(self) -> bool: ...


class TcpProbe:
    """Ready when a TCP connection to ``host:port`` is accepted."""

    __slots__ = ("host", "port", "timeout")

    def __init__(self, host: str, port: int, timeout: float = 1.0) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout

    def __call__(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=self.timeout):
                return True
        except OSError:
            return False


class HttpProbe:
    """Ready when ``GET http://host:port/path`` answers with ``status``."""

    __slots__ = ("host", "path", "port", "status", "timeout")

    def __init__(self, host: str, port: int, path: str, status: int = 200, timeout: float = 1.0) -> None:
        self.host = host
        self.port = port
        self.path = path
        self.status = status
        self.timeout = timeout

    def __call__(self) -> bool:
        return answers(http.client.HTTPConnection(self.host, self.port, timeout=self.timeout), self.path,
                       self.status)


def answers(conn: http.client.HTTPConnection, path: str, status: int) -> bool:
    """GET ``path`` on ``conn`` (plain or TLS) and say whether it answered ``status``; always closes."""
    try:
        conn.request("GET", path)
        return conn.getresponse().status == status
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()
