"""A small in-memory catalog for unit tests of pure logic."""

from __future__ import annotations

from citytelemetry.profiles import Catalog, RegisteredDevice
from citytelemetry.profiles.catalog import device_tags
from citytelemetry.profiles.models import DeviceProfile, System

GAS = DeviceProfile.model_validate({
    "type": "tunnel_multigas", "system": "tunnel", "description": "multi-gas detector",
    "reporting_interval_s": 10,
    "measurements": {
        "o2": {"description": "oxygen", "value_type": "float", "unit": "%vol", "range": {"min": 0, "max": 25}},
        "ch4": {"description": "methane", "value_type": "float", "unit": "%LEL", "range": {"min": 0, "max": 100}},
        "alarms": {"description": "alarm count", "value_type": "int", "range": {"min": 0, "max": 1000}},
        "heater_on": {"description": "sensor heater", "value_type": "bool"},
        "mode": {"description": "operating mode", "value_type": "enum", "values": ["normal", "calibration", "fault"]},
    },
})


def make_catalog() -> Catalog:
    location = {"cabin": "power", "compartment": "c001"}
    device = RegisteredDevice(id="tun-c001-gas1", site="hunnan", system=System.TUNNEL, profile=GAS,
                              location=location,
                              tags=device_tags("hunnan", System.TUNNEL, GAS, "tun-c001-gas1", location))
    return Catalog(profiles={GAS.type: GAS}, devices={device.id: device})
