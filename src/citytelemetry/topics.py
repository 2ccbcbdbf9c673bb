"""The MQTT topic scheme (docs/device-contract.md):

    ct/v1/<site>/<system>/<device_id>/telemetry    readings, QoS 1
    ct/v1/<site>/<system>/<device_id>/status       retained birth "online" / last-will "offline"
    ct/v1/deadletter/<reason>                      rejections published by the pipeline

The device identity comes from the topic; broker ACLs bind each device credential to its own topics.
"""

from __future__ import annotations

from dataclasses import dataclass

PREFIX = "ct/v1"
TELEMETRY = "telemetry"
STATUS = "status"


@dataclass(slots=True, frozen=True)
class DeviceTopic:
    site: str
    system: str
    device_id: str
    kind: str  # TELEMETRY or STATUS


def telemetry_topic(site: str, system: str, device_id: str, prefix: str = PREFIX) -> str:
    return f"{prefix}/{site}/{system}/{device_id}/{TELEMETRY}"


def status_topic(site: str, system: str, device_id: str, prefix: str = PREFIX) -> str:
    return f"{prefix}/{site}/{system}/{device_id}/{STATUS}"


def deadletter_topic(reason: str, prefix: str = PREFIX) -> str:
    return f"{prefix}/deadletter/{reason}"


def subscriptions(prefix: str = PREFIX) -> list[str]:
    """Topic filters the pipeline subscribes to."""
    return [f"{prefix}/+/+/+/{TELEMETRY}", f"{prefix}/+/+/+/{STATUS}"]


def parse_device_topic(topic: str, prefix: str = PREFIX) -> DeviceTopic | None:
    """Split a device topic into its identity; ``None`` if it does not follow the scheme."""
    if not topic.startswith(prefix + "/"):
        return None
    parts = topic[len(prefix) + 1 :].split("/")
    if len(parts) != 4 or parts[3] not in (TELEMETRY, STATUS) or not all(parts[:3]):
        return None
    return DeviceTopic(site=parts[0], system=parts[1], device_id=parts[2], kind=parts[3])
