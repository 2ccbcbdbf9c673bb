"""Data completeness from device sequence numbers: gaps, duplicates and out-of-order readings per device.

A device numbers its readings 1, 2, 3, ...; every number skipped between two durable readings is a
gap (a reading the device made that we never got), every repeat a duplicate (refused as
``duplicate_sequence``), every step backwards out of order (a replay, or a device restart, after which
counting starts again). Completeness = received / (received + gaps), per device, and summed per
system and site. Written to InfluxDB as ``ct_completeness`` (one point per device per interval).
"""

from __future__ import annotations

from collections import defaultdict

from citytelemetry.measurements import COMPLETENESS
from citytelemetry.profiles import Catalog
from citytelemetry.records import FieldValue
from citytelemetry.sink.line_protocol import format_line, saturated


class _Device:
    __slots__ = ("changed", "duplicates", "gaps", "last_seq", "out_of_order", "received")

    def __init__(self) -> None:
        self.last_seq = -1
        self.received = self.gaps = self.duplicates = self.out_of_order = 0
        self.changed = True


class CompletenessTracker:
    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog
        self._devices: dict[str, _Device] = {}

    def _device(self, device_id: str) -> _Device:
        state = self._devices.get(device_id)
        if state is None:
            state = self._devices[device_id] = _Device()
        return state

    def landed(self, device_id: str, seq: int) -> None:
        state = self._device(device_id)
        if state.last_seq >= 0 and seq > state.last_seq + 1:
            state.gaps += seq - state.last_seq - 1
        elif 0 <= seq <= state.last_seq:
            state.out_of_order += 1
        state.last_seq = seq
        state.received += 1
        state.changed = True

    def duplicate(self, device_id: str) -> None:
        state = self._device(device_id)
        state.duplicates += 1
        state.changed = True

    def by_system(self) -> dict[str, tuple[int, int]]:
        """(received, expected) per system."""
        totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for device_id, state in self._devices.items():
            system = self._catalog.devices[device_id].system.value
            totals[system][0] += state.received
            totals[system][1] += state.received + state.gaps
        return {system: (r, e) for system, (r, e) in totals.items()}

    def lines(self, timestamp_ns: int) -> list[bytes]:
        """Points for the devices whose figures changed since the last call."""
        out = []
        for device_id, state in self._devices.items():
            if not state.changed:
                continue
            state.changed = False
            expected = state.received + state.gaps
            # seq 0 then 2^63 - 1 is a gap of 2^63 - 2: saturated, or the point would be refused
            fields: dict[str, FieldValue] = {
                "received": state.received, "expected": saturated(expected), "gaps": saturated(state.gaps),
                "duplicates": state.duplicates, "out_of_order": state.out_of_order,
                "completeness": state.received / expected if expected else 1.0,
            }
            out.append(format_line(COMPLETENESS, self._catalog.devices[device_id].tags, fields,
                                   timestamp_ns))
        return out

    def use_catalog(self, catalog: Catalog) -> None:
        """Reload (run/reload.py): devices keep their figures. A removed device stays known, with its tags:
        a reading of it in flight at the swap still lands and counts, and its history stays in its system."""
        devices = {**self._catalog.devices, **catalog.devices}
        self._catalog = Catalog(profiles=catalog.profiles, devices=devices)
