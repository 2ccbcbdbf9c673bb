"""Local service management for dev runs and test fixtures: mosquitto, influxd, alertmanager, victoria-metrics.

Each instance lives under ``<run_dir>/<name>/`` (rendered config, data dir, log file, pid file), binds
127.0.0.1 only, and is recognised as ours by its pid file plus its command line. Nothing here ever
signals a process it did not start.

    with ManagedService(definitions.influxd(run_dir, free_port())) as influx:
        ...  # influx.url answers /ping
"""

from citytelemetry.services import definitions
from citytelemetry.services.errors import BinaryNotFoundError, PortInUseError, ServiceError, ServiceStartError
from citytelemetry.services.managed import ManagedService, ServiceState, ServiceStatus
from citytelemetry.services.ports import free_port, port_is_free
from citytelemetry.services.probes import HttpProbe, Probe, TcpProbe
from citytelemetry.services.spec import ConfigFile, ServiceSpec
from citytelemetry.services.stack import managed_services

__all__ = [
    "BinaryNotFoundError",
    "ConfigFile",
    "HttpProbe",
    "ManagedService",
    "PortInUseError",
    "Probe",
    "ServiceError",
    "ServiceSpec",
    "ServiceStartError",
    "ServiceState",
    "ServiceStatus",
    "TcpProbe",
    "definitions",
    "free_port",
    "managed_services",
    "port_is_free",
]
