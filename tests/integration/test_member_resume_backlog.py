"""A partitioned member resumes its session over a backlog larger than its receive maximum.

The broker sends the queued messages at CONNACK, so the receive window is full before the member has
confirmed its subscriptions (several SUBSCRIBE batches, ``partition.FILTERS_PER_SUBSCRIBE``, then the
UNSUBSCRIBEs of what the session may still hold). With a full window mosquitto 2.0.11 answers nothing
until messages are acknowledged, and nothing was consumed before every batch was answered: the connect
timed out, every time (bench part d: three members over 50,000 queued messages never consumed one).
Real mosquitto, MQTT 5 and 3.1.1.
"""

from __future__ import annotations

import asyncio
import uuid

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from citytelemetry.config import MqttSettings
from citytelemetry.ingest.mqtt5_source import Mqtt5Source
from citytelemetry.ingest.partition import FILTERS_PER_SUBSCRIBE
from tests.conftest import MqttBroker

pytestmark = pytest.mark.integration

WINDOW = 20  # receive maximum: the backlog is ten times more
BACKLOG = 10 * WINDOW
WAIT_S = 10.0  # more than the source's own connect timeout


def _publish(broker: MqttBroker, topics: list[str], count: int) -> None:
    """``count`` QoS 1 messages over ``topics`` in turn, each acknowledged by the broker."""
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}",
                         protocol=mqtt.MQTTv5)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        infos = [client.publish(topics[i % len(topics)], f"m{i:04}".encode(), qos=1) for i in range(count)]
        for info in infos:
            info.wait_for_publish(WAIT_S)
            assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_a_member_resuming_over_a_backlog_subscribes_and_consumes_all_of_it(
        mosquitto: MqttBroker, mqtt_topic_prefix: str, protocol: str) -> None:
    prefix = mqtt_topic_prefix
    filters = [f"{prefix}/s1/heat/dev{i:04}/telemetry" for i in range(FILTERS_PER_SUBSCRIBE * 2 + 50)]  # 3 batches
    foreign = [f"{prefix}/s1/heat/other{i:04}/telemetry" for i in range(FILTERS_PER_SUBSCRIBE + 1)]  # 2 batches
    settings = MqttSettings(url=mosquitto.url, topic_prefix=prefix, client_id=f"ct-member-{uuid.uuid4().hex[:8]}",
                            receive_maximum=WINDOW, session_expiry_s=60, protocol=protocol)
    async with Mqtt5Source(settings, topic_filters=filters, unsubscribe=foreign):
        pass  # the session now holds the member's subscriptions
    # the first and the last batch's devices: every batch must be answered before the member consumes
    await asyncio.to_thread(_publish, mosquitto, [filters[0], filters[-1]], BACKLOG)

    received: list[bytes] = []
    async with asyncio.timeout(WAIT_S):
        async with Mqtt5Source(settings, topic_filters=filters, unsubscribe=foreign) as source:
            assert source.session_present
            async for message in source.messages():
                received.append(message.payload)
                message.delivery.settle()
                if len(received) == BACKLOG:
                    break

    assert sorted(received) == [f"m{i:04}".encode() for i in range(BACKLOG)]
