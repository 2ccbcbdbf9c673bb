"""District simulators: every device of the inventory publishing realistic, reproducible telemetry,
with a known number of deliberately bad messages and the rejection each must get.

    from simulators import DistrictSimulator, publish
    summary = publish(DistrictSimulator(catalog, seed=1, duration_s=60, faults={"not_json": 2}), url)
    summary.expected_points, summary.fault_counts, summary.faults

Message generation (``generate.py``, no network) and publishing (``publishing.py``, MQTT) are apart;
``district.py`` names both for existing imports.
"""

from simulators.faults import FAULT_REASONS, LEVELS, FaultPlanError, FaultRecord, Level, parse_fault_counts
from simulators.generate import DistrictSimulator, Pacing, SimMessage, Summary, SystemCounts, select_devices
from simulators.publishing import MqttTarget, Progress, PublishError, publish

__all__ = [
    "FAULT_REASONS",
    "LEVELS",
    "DistrictSimulator",
    "FaultPlanError",
    "FaultRecord",
    "Level",
    "MqttTarget",
    "Pacing",
    "Progress",
    "PublishError",
    "SimMessage",
    "Summary",
    "SystemCounts",
    "parse_fault_counts",
    "publish",
    "select_devices",
]
