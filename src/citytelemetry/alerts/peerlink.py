"""The alert engine's own small MQTT connection to its peers: publish our site tallies, read theirs.

Separate from the data connection (client id ``<mqtt.client_id>-peers``, username ``<mqtt.username>-peers``
with the same password) so that acknowledgement, validation and flow control of device data are untouched:
tallies are not device data and must not be spooled, validated or dead-lettered. Its own account because
the brokers we configure bind the client id to the username (security/mosquitto.py): a second connection
of the pipeline's account would take the data connection's session over.

Topic ``<topic_prefix>/members/<n>/<k>``: three levels below the prefix, where a device topic has four
(``<site>/<system>/<device>/<kind>``), so no device topic or wildcard of the scheme matches it,
and the ACL lets only the peers' accounts write there. Subscribing to ``…/members/<n>/+`` hears only the members of
our own partitioning: during a change of member count the old and the new members do not mix figures.
Not retained, session not kept (expiry 0): a report is worth something only while it is fresh, and
every member sends one every evaluation interval.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from citytelemetry.alerts.peers import Report, SiteTallies
from citytelemetry.config import MqttSettings
from citytelemetry.ingest.broker import BrokerError, BrokerSource
from citytelemetry.ingest.factory import open_source
from citytelemetry.security.mosquitto import peer_user

log = logging.getLogger(__name__)


def peer_topic(prefix: str, count: int, member: int | str) -> str:
    return f"{prefix}/members/{count}/{member}"


def peer_mqtt(mqtt: MqttSettings) -> MqttSettings:
    """The data connection's settings with the peers' client id and account; no persistent session."""
    username = None if mqtt.username is None else peer_user(mqtt.username)
    return mqtt.model_copy(update={"client_id": peer_user(mqtt.client_id), "username": username,
                                   "session_expiry_s": 0})


class PeerLink:
    def __init__(self, mqtt: MqttSettings, tallies: SiteTallies, mark_ms: Callable[[], int | None], *,
                 interval_s: float) -> None:
        self.mqtt = peer_mqtt(mqtt)
        self.tallies = tallies
        self.mark_ms = mark_ms
        self.interval_s = interval_s
        part = tallies.part
        self.topic = peer_topic(mqtt.topic_prefix, part.count, part.member)
        self.filter = peer_topic(mqtt.topic_prefix, part.count, "+")
        self.connected = False
        self.published = self.received = 0

    async def run(self) -> None:
        """Until cancelled; a lost broker is retried every interval (the peers then see us as stale)."""
        failing = False
        while True:
            try:
                async with open_source(self.mqtt, topic_filters=[self.filter]) as source:
                    self.connected, failing = True, False
                    async with asyncio.TaskGroup() as group:
                        group.create_task(self._publish(source), name="peer-tallies-publish")
                        group.create_task(self._receive(source), name="peer-tallies-receive")
            except* BrokerError as errors:
                if not failing:  # once per outage: the data connection's log says the rest
                    log.warning("peer tallies: %s; retrying every %g s", errors.exceptions[0], self.interval_s)
                failing = True
            finally:
                self.connected = False
            await asyncio.sleep(self.interval_s)

    async def _publish(self, source: BrokerSource) -> None:
        while True:
            await source.publish(self.topic, self.tallies.report(self.mark_ms()).encode(), qos=1)
            self.published += 1
            await asyncio.sleep(self.interval_s)

    async def _receive(self, source: BrokerSource) -> None:
        async for message in source.messages():
            message.delivery.settle()
            if message.topic == self.topic:
                continue  # our own, echoed back
            try:
                report = Report.decode(message.payload)
            except ValueError as exc:
                self.tallies.refused += 1
                log.warning("peer tallies: refused a report on %s: %s", message.topic, exc)
                continue
            if self.tallies.receive(report):
                self.received += 1
