"""Publishers: several processes, each one paho connection, QoS 1, payloads encoded before the clock starts.

``publish_bulk`` sends a workload as fast as the broker acknowledges it; ``publish_paced`` sends
single-reading messages at a fixed total rate, stamping each reading's ``ts`` with its publish time
(wall clock, ms), which is how the latency part measures publish -> queryable.
"""

from __future__ import annotations

import multiprocessing as mp
import random
import threading
import time
from dataclasses import dataclass
from multiprocessing.synchronize import Event as MpEvent
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.workload import FIELDS, Workload, device_id, messages, telemetry_topic

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


def _bulk_worker(share: _Share, work: Workload, base_ms: int, ready: MpEvent, go: MpEvent,
                 out: mp.Queue[tuple[int, float, float]]) -> None:
    batch = list(messages(work, share.prefix, part=share.part, parts=share.parts, base_ms=base_ms))
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


def publish_bulk(host: str, port: int, work: Workload, prefix: str, *, processes: int = 2,
                 base_ms: int | None = None) -> PublishResult:
    """Publish the whole workload; returns once every message is acknowledged by the broker."""
    ctx = mp.get_context("spawn")
    base = base_ms if base_ms is not None else int(time.time() * 1000) - 3_600_000
    out: mp.Queue[tuple[int, float, float]] = ctx.Queue()
    go = ctx.Event()
    readies = [ctx.Event() for _ in range(processes)]
    procs = [ctx.Process(target=_bulk_worker, args=(_Share(host, port, prefix, k, processes), work, base, readies[k],
                                                    go, out), daemon=True) for k in range(processes)]
    return _run(procs, readies, go, out, timeout_s=ACK_TIMEOUT_S + 120)


def _run(procs: list[Any], readies: list[MpEvent], go: MpEvent, out: mp.Queue[tuple[int, float, float]],
         *, timeout_s: float) -> PublishResult:
    for proc in procs:
        proc.start()
    try:
        deadline = time.monotonic() + 120
        while not all(ready.is_set() for ready in readies):
            if time.monotonic() > deadline or any(p.exitcode not in (None, 0) for p in procs):
                raise RuntimeError("a publisher process failed to start (see its traceback above)")
            time.sleep(0.05)
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


_TEMPLATE = b'{"device":"%s","seq":%d,"ts":%d,"values":{%s}}'


def _paced_worker(share: _Share, devices: int, rate: float, duration_s: float, ready: MpEvent, go: MpEvent,
                  out: mp.Queue[tuple[int, float, float]]) -> None:
    rng = random.Random(share.part)
    mine = list(range(share.part, devices, share.parts))
    topics = [telemetry_topic(share.prefix, i) for i in mine]
    ids = [device_id(i).encode() for i in mine]
    values = [b",".join(b'"%s":%.3f' % (f.encode(), rng.uniform(10, 90)) for f in FIELDS) for _ in range(64)]
    seqs = [0] * len(mine)
    last_ts = [0] * len(mine)
    client, acks = _connect(share.host, share.port, share.client_id("pace"))
    ready.set()
    go.wait(60)
    started = time.monotonic()
    sent = 0
    total = int(rate * duration_s)
    while sent < total:
        due = started + sent / rate
        delay = due - time.monotonic()
        if delay > 0.002:
            time.sleep(delay)
        acks.window(sent)
        k = sent % len(mine)
        seqs[k] += 1
        now_ms = time.time_ns() // 1_000_000
        last_ts[k] = ts = max(now_ms, last_ts[k] + 1)
        client.publish(topics[k], _TEMPLATE % (ids[k], seqs[k], ts, values[sent % 64]), qos=1)
        sent += 1
    acks.wait(sent, ACK_TIMEOUT_S)
    out.put((sent, started, time.monotonic()))
    client.disconnect()
    client.loop_stop()


def publish_paced(host: str, port: int, devices: int, prefix: str, *, rate: float, duration_s: float,
                  processes: int = 2) -> PublishResult:
    """Single-reading messages at ``rate`` msg/s in total for ``duration_s``; ts = publish time (ms)."""
    ctx = mp.get_context("spawn")
    out: mp.Queue[tuple[int, float, float]] = ctx.Queue()
    go = ctx.Event()
    readies = [ctx.Event() for _ in range(processes)]
    procs = [ctx.Process(target=_paced_worker, args=(_Share(host, port, prefix, k, processes), devices,
                                                     rate / processes, duration_s, readies[k], go, out), daemon=True)
             for k in range(processes)]
    return _run(procs, readies, go, out, timeout_s=duration_s + ACK_TIMEOUT_S + 60)
