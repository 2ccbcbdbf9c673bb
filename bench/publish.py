"""Publishers: several processes, each one paho connection, QoS 1, payloads encoded before the clock starts.

``publish_bulk`` sends a generated workload as fast as the broker acknowledges it; ``publish_paced`` sends
single-reading district messages at a fixed total rate, each due at a wall-clock time that follows from
its ``ts`` (``PacedPlan``), which is how the latency part measures publish -> queryable.
"""

from __future__ import annotations

import multiprocessing as mp
import threading
import time
from dataclasses import dataclass
from multiprocessing.synchronize import Event as MpEvent
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.workload import PREFIX_MARK, PacedDevice, load, paced_stream, paced_values, readings_per_s

INFLIGHT = 1000  # paho's own window; mosquitto accepts this many unacknowledged QoS 1 messages per client
ACK_TIMEOUT_S = 120.0


@dataclass(frozen=True, slots=True)
class PublishResult:
    messages: int
    seconds: float  # first publish -> last PUBACK, over all publishers

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0


class _Acks:
    """PUBACK counter; ``window`` keeps at most ``INFLIGHT`` messages unacknowledged, so paho never queues.

    (Left to queue beyond its in-flight limit, paho 2.2 sometimes never sends a queued message when
    publish() and PUBACKs race on two threads: a 100k-message publisher then waits forever.)
    """

    def __init__(self) -> None:
        self.count = 0
        self.target = 0  # wake the waiter only once this many are acknowledged
        self.cond = threading.Condition()

    def on_publish(self, *_: Any) -> None:
        with self.cond:
            self.count += 1
            if self.count >= self.target:
                self.cond.notify_all()

    def wait(self, total: int, timeout_s: float) -> None:
        with self.cond:
            self.target = total
            if not self.cond.wait_for(lambda: self.count >= total, timeout_s):
                raise TimeoutError(f"{total - self.count} of {total} messages not acknowledged in {timeout_s} s")

    def window(self, sent: int) -> None:
        """Block while ``INFLIGHT`` messages await their PUBACK."""
        if sent - self.count >= INFLIGHT:
            self.wait(sent - INFLIGHT + INFLIGHT // 2, ACK_TIMEOUT_S)


def _connect(host: str, port: int, client_id: str) -> tuple[mqtt.Client, _Acks]:
    acks = _Acks()
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=mqtt.MQTTv311)
    client.max_inflight_messages_set(INFLIGHT)
    client.max_queued_messages_set(0)
    client.on_publish = acks.on_publish
    client.connect(host, port, keepalive=60)
    client.loop_start()
    return client, acks


@dataclass(frozen=True, slots=True)
class _Share:
    """What one publisher process sends and where; ``part`` of ``parts``."""

    host: str
    port: int
    prefix: str
    part: int
    parts: int

    def client_id(self, kind: str) -> str:
        return f"bench-{kind}-{self.prefix.replace('/', '-')}-{self.part}"


def _bulk_worker(share: _Share, path: Path, ready: MpEvent, go: MpEvent,
                 out: mp.Queue[tuple[int, float, float]]) -> None:
    batch = load(path).share(share.prefix, share.part, share.parts)
    client, acks = _connect(share.host, share.port, share.client_id("pub"))
    ready.set()
    go.wait(60)
    started = time.monotonic()
    for sent, (topic, body) in enumerate(batch):
        acks.window(sent)
        client.publish(topic, body, qos=1)
    acks.wait(len(batch), ACK_TIMEOUT_S)
    out.put((len(batch), started, time.monotonic()))
    client.disconnect()
    client.loop_stop()


def publish_bulk(host: str, port: int, path: Path, prefix: str, *, processes: int = 2) -> PublishResult:
    """Publish the generated workload saved at ``path``; returns once the broker acknowledged every message."""
    ctx = mp.get_context("spawn")
    out: mp.Queue[tuple[int, float, float]] = ctx.Queue()
    go = ctx.Event()
    readies = [ctx.Event() for _ in range(processes)]
    procs = [ctx.Process(target=_bulk_worker, args=(_Share(host, port, prefix, k, processes), path, readies[k],
                                                    go, out), daemon=True) for k in range(processes)]
    return _run(procs, readies, go, out, timeout_s=ACK_TIMEOUT_S + 120)


def _run(procs: list[Any], readies: list[MpEvent], go: MpEvent, out: mp.Queue[tuple[int, float, float]],
         *, timeout_s: float, wall0: tuple[Any, PacedPlan] | None = None) -> PublishResult:
    for proc in procs:
        proc.start()
    try:
        deadline = time.monotonic() + 120
        while not all(ready.is_set() for ready in readies):
            if time.monotonic() > deadline or any(p.exitcode not in (None, 0) for p in procs):
                raise RuntimeError("a publisher process failed to start (see its traceback above)")
            time.sleep(0.05)
        if wall0 is not None:  # device time starts now, for the publishers and for the caller's probe
            wall0[0].value = wall0[1].wall0 = time.time() + 0.05
        go.set()
        results = [out.get(timeout=timeout_s) for _ in procs]
    finally:
        for proc in procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join()
    count = sum(r[0] for r in results)
    return PublishResult(count, max(r[2] for r in results) - min(r[1] for r in results))


_TEMPLATE = b'{"device":"%s","seq":%d,"ts":%d,"values":%s}'


@dataclass(slots=True)
class PacedPlan:
    """District devices at their own cadence, device time accelerated so that ``rate`` msg/s leave.

    Reading ts of a device advances by its reporting interval (the rate limit and the alert rules see
    the cadence they expect); the message with ``ts`` is due at ``wall0 + (ts - start_ms) / accel``, so
    device time runs ``accel`` times faster than the wall clock and ends near now. ``wall0`` is set when
    the publishers start; the latency probe maps a point's ts back to when it was due."""

    devices: list[PacedDevice]
    rate: float
    duration_s: float
    accel: float = 0.0
    start_ms: int = 0
    wall0: float = 0.0  # epoch seconds of device time start_ms; 0 until the publishers start

    def __post_init__(self) -> None:
        self.accel = max(1.0, self.rate / readings_per_s(self.devices))
        self.start_ms = int(time.time() * 1000) - int(self.accel * self.duration_s * 1000) - 5_000

    def due(self, ts_ms: float) -> float:
        return self.wall0 + (ts_ms - self.start_ms) / self.accel / 1000


def _paced_worker(share: _Share, plan: PacedPlan, wall0: Any, ready: MpEvent, go: MpEvent,
                  out: mp.Queue[tuple[int, float, float]]) -> None:
    devices = [d for k, d in enumerate(plan.devices) if k % share.parts == share.part]
    topics = [share.prefix + d.topic[len(PREFIX_MARK):] for d in devices]
    ids = [d.device_id.encode() for d in devices]
    seqs = [0] * len(devices)
    end_ms = plan.start_ms + plan.accel * plan.duration_s * 1000
    client, acks = _connect(share.host, share.port, share.client_id("pace"))
    ready.set()
    go.wait(60)
    plan.wall0 = wall0.value
    started = time.monotonic()
    sent = 0
    for k, ts in paced_stream(devices, plan.start_ms):
        if ts >= end_ms:
            break
        delay = plan.due(ts) - time.time()
        if delay > 0.002:
            time.sleep(delay)
        acks.window(sent)
        seqs[k] += 1
        client.publish(topics[k], _TEMPLATE % (ids[k], seqs[k], ts, paced_values(devices[k], seqs[k])), qos=1)
        sent += 1
    acks.wait(sent, ACK_TIMEOUT_S)
    out.put((sent, started, time.monotonic()))
    client.disconnect()
    client.loop_stop()


def publish_paced(host: str, port: int, plan: PacedPlan, prefix: str, *, processes: int = 2) -> PublishResult:
    """District messages of one reading at ``plan.rate`` msg/s in total for ``plan.duration_s``."""
    ctx = mp.get_context("spawn")
    out: mp.Queue[tuple[int, float, float]] = ctx.Queue()
    go = ctx.Event()
    wall0 = ctx.Value("d", 0.0)
    readies = [ctx.Event() for _ in range(processes)]
    procs = [ctx.Process(target=_paced_worker, args=(_Share(host, port, prefix, k, processes), plan, wall0,
                                                     readies[k], go, out), daemon=True)
             for k in range(processes)]
    return _run(procs, readies, go, out, timeout_s=plan.duration_s + ACK_TIMEOUT_S + 60, wall0=(wall0, plan))
