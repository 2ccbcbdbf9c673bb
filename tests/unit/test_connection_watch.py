from __future__ import annotations

import pytest

from citytelemetry.ingest.broker import BrokerError, ConnectRefusedError, SessionTakenOverError
from citytelemetry.ingest.watch import BrokerGaveUpError, ConnectionWatch


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def refused(code: str = "NOT_AUTHORIZED", *, fatal: bool = True) -> ConnectRefusedError:
    return ConnectRefusedError(f"127.0.0.1:1883 refused the connection: {code}", code, fatal=fatal)


def test_fatal_refusals_in_a_row_give_up_with_the_brokers_reason() -> None:
    watch = ConnectionWatch("ct-1", refusals=3)
    assert watch.ended(refused()) is None
    assert watch.ended(refused()) is None
    with pytest.raises(BrokerGaveUpError) as gave_up:
        watch.ended(refused())
    assert str(gave_up.value) == ("127.0.0.1:1883 refused the connection: NOT_AUTHORIZED; refused 3 times in a row, "
                                  "giving up")


def test_a_connection_in_between_or_a_passing_refusal_starts_the_count_again() -> None:
    watch = ConnectionWatch("ct-1", refusals=2)
    assert watch.ended(refused()) is None
    watch.connected()
    assert watch.ended(BrokerError("connection closed")) is None
    assert watch.ended(refused()) is None
    for _ in range(5):
        assert watch.ended(refused("SERVER_BUSY", fatal=False)) is None
    with pytest.raises(BrokerGaveUpError):
        watch.ended(refused())


def test_mqtt5_takeover_is_reported_at_once() -> None:
    watch = ConnectionWatch("ct-1")
    watch.connected()
    report = watch.ended(SessionTakenOverError("the broker disconnected us (SESSION_TAKEN_OVER)"))
    assert report == ("the broker disconnected us (SESSION_TAKEN_OVER): another client is probably connected with "
                      "our client id 'ct-1', and the two knock each other off; each process needs its own "
                      "mqtt.client_id")
    assert watch.takeovers == 1


def test_repeated_closes_soon_after_connecting_are_a_probable_takeover() -> None:
    clock = Clock()
    watch = ConnectionWatch("ct-1", closes=3, short_s=5.0, clock=clock)
    reports = []
    for _ in range(3):
        watch.connected()
        clock.now += 0.8
        reports.append(watch.ended(BrokerError("connection closed")))
    assert reports[:2] == [None, None]
    assert reports[2] is not None
    assert reports[2].startswith("the broker closed our connection within 5 s of connecting, 3 times in a row "
                                 "(last: connection closed): another client is probably connected with our client "
                                 "id 'ct-1'")


def test_a_long_lived_connection_or_a_broker_that_is_down_is_no_takeover() -> None:
    clock = Clock()
    watch = ConnectionWatch("ct-1", closes=2, clock=clock)
    watch.connected()
    clock.now += 1
    assert watch.ended(BrokerError("connection closed")) is None
    watch.connected()
    clock.now += 60  # an hour-long session ending is a broker restart, not a takeover
    assert watch.ended(BrokerError("connection closed")) is None
    for _ in range(5):  # cannot connect at all
        assert watch.ended(BrokerError("cannot connect to 127.0.0.1:1883: refused")) is None
    assert watch.takeovers == 0
