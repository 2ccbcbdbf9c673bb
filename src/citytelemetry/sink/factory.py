"""Build the configured InfluxDB writer (1.x ``/write`` or 2.x/3.x through influxdb-client)."""

from __future__ import annotations

from citytelemetry.config import InfluxSettings
from citytelemetry.contracts import LineWriter
from citytelemetry.sink.influx_v1 import InfluxV1Writer
from citytelemetry.sink.influx_v2 import InfluxV2Writer


def make_writer(settings: InfluxSettings) -> LineWriter:
    if settings.api == "v2":
        if settings.org is None or settings.bucket is None or settings.token is None:
            raise ValueError("influx.api = 'v2' needs influx.org, influx.bucket and influx.token")
        return InfluxV2Writer(settings.url, org=settings.org, bucket=settings.bucket,
                              token=settings.token.get_secret_value(), timeout_s=settings.timeout_s,
                              ca_file=settings.ca_file)
    return InfluxV1Writer(
        settings.url, settings.database, retention_policy=settings.retention_policy,
        username=settings.username,
        password=settings.password.get_secret_value() if settings.password else None,
        timeout_s=settings.timeout_s, create_database=settings.create_database, ca_file=settings.ca_file,
    )
