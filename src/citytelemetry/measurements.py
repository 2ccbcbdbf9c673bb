"""Every InfluxDB measurement citytelemetry writes besides the device types' own (one per profile).

Readings go to the measurement their device profile names (``tunnel_multigas``, ``chp_engine``, ...);
everything the pipeline writes about itself and about refused data is named here, once.
"""

from __future__ import annotations

from typing import Final

DEVICE_STATUS: Final = "ct_device_status"  # birth / last will of a device (retained status topic)
REJECTS: Final = "ct_rejects"  # dead letters: one point per refused message, reason-coded
PIPELINE: Final = "ct_pipeline"  # self-metrics of one pipeline member (cumulative counters)
PIPELINE_REJECTS: Final = "ct_pipeline_rejects"  # rejection counters by reason code
COMPLETENESS: Final = "ct_completeness"  # per-device gaps, duplicates, out-of-order from sequence numbers
ALERTS: Final = "ct_alerts"  # alert history: one point per firing and per resolution
