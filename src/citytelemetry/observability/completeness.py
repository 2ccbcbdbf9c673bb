"""Data completeness from device sequence numbers: gaps, duplicates and late readings per device.

A device numbers its readings 1, 2, 3, ...; between the lowest and the newest seq that landed, every
number that has not landed (yet) is a gap. A late reading (one that arrives after a higher seq, e.g.
retransmitted after a reconnect, or a gateway's backlog) fills its gap and is counted once more under
``out_of_order``; a repeat is a duplicate (refused as ``duplicate_sequence``). The validator's sequence
window decides what lands (validate/sequence.py); this module only counts, on the same rules: a lower
seq timestamped after everything the device sent is a restart, after which counting starts again, the
old numbering's figures kept. Completeness = received / (received + gaps), per device, and summed per
system and site. Written to InfluxDB as ``ct_completeness`` (one point per device per interval).
"""

from __future__ import annotations

from collections import defaultdict

from citytelemetry.measurements import COMPLETENESS
from citytelemetry.profiles import Catalog
from citytelemetry.records import FieldValue
from citytelemetry.sink.line_protocol import format_line, saturated


class DeviceCounts:
    """One device's figures; the fields are what the checkpoint stores."""

    __slots__ = ("changed", "duplicates", "earlier_expected", "earlier_received", "low", "max_ts",
                 "out_of_order", "received", "top")

    def __init__(self, seq: int, timestamp_ms: int) -> None:
        self.low = self.top = seq  # lowest and newest seq of the current numbering that landed
        self.received = 1  # readings of the current numbering that landed
        self.max_ts = timestamp_ms
        self.earlier_received = self.earlier_expected = 0  # numberings before the last restart
        self.duplicates = self.out_of_order = 0
        self.changed = True

    @property
    def expected(self) -> int:
        return self.earlier_expected + max(self.received, self.top - self.low + 1)

    @property
    def total_received(self) -> int:
        return self.earlier_received + self.received


class CompletenessTracker:
    def __init__(self, catalog: Catalog, *, instance: str | None = None) -> None:
        self._catalog = catalog
        # The member that counted (mqtt.client_id, as on the self-metrics): members never share a series.
        self._instance = () if instance is None else (("instance", instance),)
        self._devices: dict[str, DeviceCounts] = {}
        self._early_duplicates: dict[str, int] = {}

    def devices(self) -> dict[str, DeviceCounts]:
        """The live per-device figures (for the checkpoint); do not modify."""
        return self._devices

    def landed(self, device_id: str, seq: int, timestamp_ms: int = -1) -> None:
        """A reading is durable. ``timestamp_ms`` tells a restart from a late reading (-1: unknown)."""
        state = self._devices.get(device_id)
        if state is None:
            state = self._devices[device_id] = DeviceCounts(seq, timestamp_ms)
            state.duplicates = self._early_duplicates.pop(device_id, 0)
            return
        if seq > state.top:
            state.top = seq
        elif timestamp_ms > state.max_ts:  # at or below the newest yet newer than all: a restart
            state.earlier_received += state.received
            state.earlier_expected += max(state.received, state.top - state.low + 1)
            state.low = state.top = seq
            state.received = 0
        else:  # a late reading: it fills its gap
            state.out_of_order += 1
            state.low = min(state.low, seq)
        state.max_ts = max(state.max_ts, timestamp_ms)
        state.received += 1
        state.changed = True

    def duplicate(self, device_id: str) -> None:
        state = self._devices.get(device_id)
        if state is None:  # the original is accepted but not durable yet: counted once it lands
            self._early_duplicates[device_id] = self._early_duplicates.get(device_id, 0) + 1
            return
        state.duplicates += 1
        state.changed = True

    def by_system(self) -> dict[str, tuple[int, int]]:
        """(received, expected) per system."""
        totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for device_id, state in self._devices.items():
            system = self._catalog.devices[device_id].system.value
            totals[system][0] += state.total_received
            totals[system][1] += state.expected
        return {system: (r, e) for system, (r, e) in totals.items()}

    def lines(self, timestamp_ns: int) -> list[bytes]:
        """Points for the devices whose figures changed since the last call."""
        out = []
        for device_id, state in self._devices.items():
            if not state.changed:
                continue
            state.changed = False
            received, expected = state.total_received, state.expected
            # seq 0 then 2^63 - 1 is a gap of 2^63 - 2: saturated, or the point would be refused
            fields: dict[str, FieldValue] = {
                "received": received, "expected": saturated(expected), "gaps": saturated(expected - received),
                "duplicates": state.duplicates, "out_of_order": state.out_of_order,
                "completeness": received / expected if expected else 1.0,
            }
            tags = tuple(sorted(self._catalog.devices[device_id].tags + self._instance))
            out.append(format_line(COMPLETENESS, tags, fields,
                                   timestamp_ns))
        return out

    def use_catalog(self, catalog: Catalog) -> None:
        """Reload (run/reload.py): devices keep their figures. A removed device stays known, with its tags:
        a reading of it in flight at the swap still lands and counts, and its history stays in its system."""
        devices = {**self._catalog.devices, **catalog.devices}
        self._catalog = Catalog(profiles=catalog.profiles, devices=devices)
