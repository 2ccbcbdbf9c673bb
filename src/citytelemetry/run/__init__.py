"""``citytelemetry run``: the pipeline from MQTT to InfluxDB, acknowledging each message once durable.

    build      the composition root: settings + catalog -> a Pipeline (no I/O)
    lifecycle  Pipeline: start, pump, reconnect with backoff, stop with a final flush
    handler    one message -> lines for the sink + its acknowledgement callback (compiled hot path)
    notices    the live dead-letter feed on <prefix>/deadletter/<reason>
    refused    lines InfluxDB refused: counted by kind, kept on disk, write_rejected dead letters
    reporting  self-metrics and completeness points
    reload     profiles, inventory and alert rules anew without a restart (SIGHUP, POST /-/reload)
"""

from citytelemetry.run.build import build_pipeline, make_pipeline
from citytelemetry.run.lifecycle import Pipeline

__all__ = ["Pipeline", "build_pipeline", "make_pipeline"]
