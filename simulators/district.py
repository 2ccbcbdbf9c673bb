"""The district simulator: generation (``generate.py``) and publishing (``publishing.py``) in one name.

    DistrictSimulator(catalog, ...).messages()  ->  SimMessage(topic, payload, ...) in simulated-time order
    publish(simulator, "mqtt://host:port")      ->  Summary, once the broker has acknowledged everything

Kept so that ``from simulators.district import ...`` (the demo, the alert CLI, tests, bench) goes on
working; new code imports from the module that does the work.
"""

from simulators.generate import (
    MAX_BATCH,
    OFFLINE,
    DistrictSimulator,
    Pacing,
    SimMessage,
    Summary,
    SystemCounts,
    select_devices,
)
from simulators.publishing import ClientFactory, Credentials, MqttTarget, Progress, PublishError, new_client, publish

__all__ = [
    "MAX_BATCH",
    "OFFLINE",
    "ClientFactory",
    "Credentials",
    "DistrictSimulator",
    "MqttTarget",
    "Pacing",
    "Progress",
    "PublishError",
    "SimMessage",
    "Summary",
    "SystemCounts",
    "new_client",
    "publish",
    "select_devices",
]
