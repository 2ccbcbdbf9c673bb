"""The one exception tree of ``citytelemetry.services``."""

from __future__ import annotations


class ServiceError(Exception):
    """A local service could not be managed; the message says which one and why."""


class BinaryNotFoundError(ServiceError):
    """The service's executable is not installed (``scripts/install`` installs it)."""


class PortInUseError(ServiceError):
    """A port the service needs is held by a process this library did not start."""


class ServiceStartError(ServiceError):
    """The service exited or did not become ready in time; the message ends with its log tail."""
