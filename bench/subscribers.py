"""Bare subscribers: count QoS 1 messages and discard them; the ceiling a consumer can reach per client library.

Run one per process: ``python -m bench.subscribers CLIENT prepare|drain --port P --topic T --client-id ID
--count N``. ``prepare`` creates the persistent session (MQTT 5, session expiry 1 h, receive maximum 2000
as the pipeline uses) and leaves; ``drain`` resumes it and reads until ``count`` messages or the timeout,
then prints one JSON line ``{"received": n, "seconds": s}`` (seconds from the connect call to the last message).

Clients: ``paho`` (paho-mqtt 2, its network thread), ``paho311`` (the same over MQTT 3.1.1: no per-message
properties; the window is then the broker's ``max_inflight_messages``, 1000), ``aiomqtt`` (what the
pipeline uses, auto-ack), ``gmqtt`` (asyncio, pure Python), ``mqtt5`` (the Rust packet codec of the
``mqtt5`` package driven by a 40-line asyncio protocol written here: the smallest Python-side cost we can
get). ``mosquitto_sub`` (C) is
run directly by ``mosquitto_sub_command``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

SESSION_EXPIRY_S = 3600
RECEIVE_MAXIMUM = 2000
CLIENTS = ("paho", "paho311", "aiomqtt", "gmqtt", "mqtt5")


@dataclass(slots=True)
class Job:
    host: str
    port: int
    topic: str
    client_id: str
    count: int
    timeout_s: float
    prepare: bool


@dataclass(slots=True)
class Tally:
    received: int = 0
    connected_at: float = 0.0
    last_at: float = 0.0

    def result(self) -> dict[str, float]:
        return {"received": self.received, "seconds": round(max(0.0, self.last_at - self.connected_at), 4)}


# -- paho ------------------------------------------------------------------------------------------
def run_paho(job: Job, *, v5: bool = True) -> Tally:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    tally, done, subscribed = Tally(), threading.Event(), threading.Event()
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=job.client_id,
                         protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311, clean_session=None if v5 else False)

    def on_message(*_: object) -> None:
        tally.received += 1
        if tally.received >= job.count:
            tally.last_at = time.monotonic()
            done.set()

    def on_connect(*_: object) -> None:
        client.subscribe(job.topic, qos=1)

    client.on_message = on_message
    client.on_connect = on_connect
    client.on_subscribe = lambda *_: subscribed.set()
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = SESSION_EXPIRY_S
    props.ReceiveMaximum = RECEIVE_MAXIMUM
    tally.connected_at = time.monotonic()
    if v5:
        client.connect(job.host, job.port, keepalive=60, clean_start=False, properties=props)
    else:  # MQTT 3.1.1: no properties to decode per message; the broker's max_inflight_messages is the window
        client.connect(job.host, job.port, keepalive=60)
    client.loop_start()
    subscribed.wait(job.timeout_s)
    if not job.prepare:
        done.wait(job.timeout_s)
    client.disconnect()
    client.loop_stop()
    return tally


# -- aiomqtt ---------------------------------------------------------------------------------------
async def run_aiomqtt(job: Job) -> Tally:
    import aiomqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    tally = Tally()
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = SESSION_EXPIRY_S
    props.ReceiveMaximum = RECEIVE_MAXIMUM
    tally.connected_at = time.monotonic()
    async with aiomqtt.Client(job.host, job.port, identifier=job.client_id, protocol=aiomqtt.ProtocolVersion.V5,
                              clean_start=False, properties=props, max_queued_incoming_messages=0) as client:
        await client.subscribe(job.topic, qos=1)
        if job.prepare:
            return tally
        try:
            async with asyncio.timeout(job.timeout_s):
                async for _ in client.messages:
                    tally.received += 1
                    if tally.received >= job.count:
                        break
        except TimeoutError:
            pass
        tally.last_at = time.monotonic()
    return tally


# -- gmqtt -----------------------------------------------------------------------------------------
async def run_gmqtt(job: Job) -> Tally:
    import gmqtt  # type: ignore[import-untyped,import-not-found,unused-ignore]  # optional: not a dependency

    tally, done = Tally(), asyncio.Event()
    client = gmqtt.Client(job.client_id, clean_session=False, session_expiry_interval=SESSION_EXPIRY_S,
                          receive_maximum=RECEIVE_MAXIMUM)

    def on_message(*_: object) -> int:
        tally.received += 1
        if tally.received >= job.count:
            tally.last_at = time.monotonic()
            done.set()
        return 0  # PUBACK reason: success

    client.on_message = on_message
    tally.connected_at = time.monotonic()
    await client.connect(job.host, job.port, keepalive=60)
    client.subscribe(job.topic, qos=1)
    await asyncio.sleep(0.2)  # the SUBACK
    if not job.prepare:
        try:
            async with asyncio.timeout(job.timeout_s):
                await done.wait()
        except TimeoutError:
            tally.last_at = time.monotonic()
    await client.disconnect()
    return tally


# -- mqtt5 (Rust codec) + asyncio protocol ---------------------------------------------------------
class _Mqtt5Protocol(asyncio.Protocol):
    def __init__(self, on_publish: Callable[[], None], on_connack: Callable[[], None],
                 on_suback: Callable[[], None]) -> None:
        import mqtt5

        self._m = mqtt5
        self._buffer = bytearray()
        self._on_publish, self._on_connack, self._on_suback = on_publish, on_connack, on_suback
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        m, buffer = self._m, self._buffer
        buffer.extend(data)
        view, offset, acks = memoryview(buffer), 0, []
        try:
            while offset < len(buffer):
                try:
                    packet, size = m.read(view[offset:])
                except IndexError:  # an incomplete packet: wait for more bytes
                    break
                offset += size
                if isinstance(packet, m.PublishPacket):
                    if packet.packet_id is not None:
                        acks.append(m.PubAckPacket(packet.packet_id).write())
                    self._on_publish()
                elif isinstance(packet, m.ConnAckPacket):
                    self._on_connack()
                elif isinstance(packet, m.SubAckPacket):
                    self._on_suback()
        finally:
            view.release()
        del buffer[:offset]
        if acks and self.transport is not None:
            self.transport.write(b"".join(acks))


async def run_mqtt5(job: Job) -> Tally:
    import mqtt5

    tally, connack, suback, done = Tally(), asyncio.Event(), asyncio.Event(), asyncio.Event()

    def on_publish() -> None:
        tally.received += 1
        if tally.received >= job.count:
            tally.last_at = time.monotonic()
            done.set()

    loop = asyncio.get_running_loop()
    tally.connected_at = time.monotonic()
    transport, _ = await loop.create_connection(lambda: _Mqtt5Protocol(on_publish, connack.set, suback.set),
                                                job.host, job.port)
    assert isinstance(transport, asyncio.Transport)
    transport.write(mqtt5.ConnectPacket(job.client_id, clean_start=False, keep_alive=60,
                                        session_expiry_interval=SESSION_EXPIRY_S,
                                        receive_max=RECEIVE_MAXIMUM).write())
    async with asyncio.timeout(10):
        await connack.wait()
    transport.write(mqtt5.SubscribePacket(1, [mqtt5.TopicFilter(job.topic, max_qos=mqtt5.QoS.AT_LEAST_ONCE)]).write())
    async with asyncio.timeout(10):
        await suback.wait()
    if not job.prepare:
        try:
            async with asyncio.timeout(job.timeout_s):
                await done.wait()
        except TimeoutError:
            tally.last_at = time.monotonic()
    transport.write(mqtt5.DisconnectPacket().write())
    transport.close()
    return tally


def mosquitto_sub_command(job: Job) -> list[str]:
    """mosquitto_sub as a bare C subscriber (MQTT 5, persistent session; payloads go to /dev/null)."""
    args = ["mosquitto_sub", "-h", job.host, "-p", str(job.port), "-V", "mqttv5", "-c", "-x", str(SESSION_EXPIRY_S),
            "-i", job.client_id, "-q", "1", "-t", job.topic, "-D", "connect", "receive-maximum", str(RECEIVE_MAXIMUM)]
    if job.prepare:
        return [*args, "-E"]
    return [*args, "-C", str(job.count), "-W", str(int(job.timeout_s))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.subscribers")
    parser.add_argument("client", choices=CLIENTS)
    parser.add_argument("mode", choices=["prepare", "drain"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args(argv)
    job = Job(args.host, args.port, args.topic, args.client_id, args.count, args.timeout, args.mode == "prepare")
    if args.client in {"paho", "paho311"}:
        tally = run_paho(job, v5=args.client == "paho")
    else:
        runner = {"aiomqtt": run_aiomqtt, "gmqtt": run_gmqtt, "mqtt5": run_mqtt5}[args.client]
        tally = asyncio.run(runner(job))
    print(json.dumps(tally.result()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
