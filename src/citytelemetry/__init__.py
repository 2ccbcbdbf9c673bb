"""citytelemetry: MQTT -> validation against device profiles -> InfluxDB, with alerting and dashboards.

The package layout follows the data flow:

    ingest/    MQTT source, topic scheme, in-order acknowledgement
    validate/  payload decoding and compiled per-profile validation -> Reading records
    sink/      line protocol, InfluxDB writers, the buffering/retry wrapper, dead letters
    profiles/  device profiles and the district inventory (the single source of truth)
    observability/  self-metrics, /metrics and /healthz
"""

__version__ = "0.1.0"

from citytelemetry.compiled import use_compiled_modules_safely

use_compiled_modules_safely()
