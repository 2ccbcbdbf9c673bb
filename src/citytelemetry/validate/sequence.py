"""Per-device sequence tracking: an anti-replay window, so reordered readings land and replays do not.

A device numbers its readings with an increasing ``seq``. MQTT does not keep that order for us: after a
reconnect paho sends new PUBLISHes before it re-sends the unacknowledged ones, and a store-and-forward
gateway sends its live reading before its backlog. So, like IPsec and DTLS (RFC 4303 §3.4.3, RFC 6347
§4.1.2.6), each device has a window over its newest ``window`` seqs with one bit per seq:

- a seq above the newest moves the window up: accepted (what it skipped are gaps, for now);
- an unseen seq inside the window is accepted wherever it arrives (a late reading filling its gap);
- a seen seq is a ``duplicate_sequence``;
- a seq below the window is a ``stale_sequence``: too old to tell a late reading from a replay. Raise
  ``pipeline.sequence_window`` if devices or gateways hold back more readings than that.

A device restart loses its counter: a seq at or below the newest with a timestamp *newer than every
reading we hold* of that device starts a new numbering (a late reading carries an older timestamp).
A reading numbered above the newest but timestamped before that restart belongs to the old numbering,
which is gone: ``stale_sequence`` (only after a restart was seen: before one, such a reading lands).

A reading whose timestamp equals that of another stored reading of the device (among its last
``TIMESTAMP_MEMORY`` accepted ones) would overwrite that InfluxDB point (same series, same time): it is
a ``duplicate_timestamp`` instead (a clock stepped back after an NTP sync, or a numbering bug).

``check`` only reads; ``accept`` changes the state, and the validator calls it only for a reading that
lands (at least one valid field). So a refused reading can never make later good ones look stale.
"""

from __future__ import annotations

from array import array

from citytelemetry.records import Reason

DEFAULT_WINDOW = 4096  # seqs: 11 h of a device reporting every 10 s, 68 min at 1 s
# Timestamps kept per device for the overwrite check: 2 KiB a device as int64, where keeping one per
# seq of the window would take 32 KiB (59 MB for the 1,800-device inventory).
TIMESTAMP_MEMORY = 256
_NO_TIMESTAMP = -(2**63)  # an empty slot of the ring: no reading has this timestamp (_in_window)


class DeviceWindow:
    """The sequence state of one device; its fields are what the checkpoint stores."""

    __slots__ = ("bits", "max_ts", "next_ts", "start_ts", "timestamps", "top")

    def __init__(self, seq: int, timestamp_ms: int) -> None:
        self.top = seq  # newest seq of the current numbering
        self.bits = 1  # bit i: seq top - i was accepted
        self.max_ts = timestamp_ms  # newest timestamp accepted from this device
        # Timestamp of the reading that began the current numbering after a restart. The first numbering
        # we see has none: a higher seq with an older timestamp (a gateway's backfill, a clock fixed
        # later) is no evidence of a restart, so nothing before it is refused as the old numbering.
        self.start_ts = _NO_TIMESTAMP
        self.timestamps = array("q", [_NO_TIMESTAMP]) * TIMESTAMP_MEMORY  # a ring of accepted timestamps
        self.timestamps[0] = timestamp_ms
        self.next_ts = 1  # next slot of the ring


class SequenceTracker:
    __slots__ = ("_devices", "_mask", "restarts", "window")

    def __init__(self, window: int = DEFAULT_WINDOW) -> None:
        if window < 1:
            raise ValueError("the sequence window needs at least one seq")
        self.window = window
        self._mask = (1 << window) - 1
        self._devices: dict[str, DeviceWindow] = {}
        self.restarts = 0

    def check(self, device_id: str, seq: int, timestamp_ms: int) -> tuple[Reason, str] | None:
        """``None`` if the reading may land, else the reason and a detail. Changes nothing."""
        state = self._devices.get(device_id)
        if state is None or timestamp_ms > state.max_ts:  # newer than all we hold: in order, or a restart
            return None
        verdict = self._place(state, seq, timestamp_ms)
        if verdict is None and timestamp_ms in state.timestamps:
            return Reason.DUPLICATE_TIMESTAMP, (f"ts {timestamp_ms} is the timestamp of another stored "
                                                f"reading of this device (seq {seq} would overwrite it)")
        return verdict

    def _place(self, state: DeviceWindow, seq: int, timestamp_ms: int) -> tuple[Reason, str] | None:
        top = state.top
        if seq > top:
            if timestamp_ms < state.start_ts:
                return Reason.STALE_SEQUENCE, (f"seq {seq} is timestamped before the device restarted "
                                               f"(numbering from seq {top} on)")
            return None
        if top - seq >= self.window:
            return Reason.STALE_SEQUENCE, (f"seq {seq} is below the window of the newest {self.window} "
                                           f"seqs (newest {top}): too old to tell from a replay")
        if state.bits >> (top - seq) & 1:
            return Reason.DUPLICATE_SEQUENCE, f"seq {seq} already seen (newest {top})"
        return None

    def accept(self, device_id: str, seq: int, timestamp_ms: int) -> None:
        """Record a reading that ``check`` let through and that lands."""
        state = self._devices.get(device_id)
        if state is None:
            self._devices[device_id] = DeviceWindow(seq, timestamp_ms)
            return
        top = state.top
        if seq > top:
            shift = seq - top
            state.bits = (state.bits << shift | 1) & self._mask if shift < self.window else 1
            state.top = seq
        elif timestamp_ms > state.max_ts:  # at or below the newest, yet newer: a new numbering
            self.restarts += 1
            state.top, state.bits, state.start_ts = seq, 1, timestamp_ms
        else:  # a late reading inside the window
            state.bits |= 1 << (top - seq)
        state.max_ts = max(state.max_ts, timestamp_ms)
        slot = state.next_ts
        state.timestamps[slot] = timestamp_ms
        state.next_ts = slot + 1 if slot + 1 < TIMESTAMP_MEMORY else 0

    def last_seq(self, device_id: str) -> int | None:
        state = self._devices.get(device_id)
        return None if state is None else state.top

    def devices(self) -> dict[str, DeviceWindow]:
        """The live per-device state (for the checkpoint); do not modify."""
        return self._devices
