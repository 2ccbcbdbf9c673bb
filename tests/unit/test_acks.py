from __future__ import annotations

from citytelemetry.ingest.acks import AckTracker


def _pubacks(data: bytes) -> list[int]:
    """The packet ids of a run of PUBACKs (4 bytes each: 0x40, 2, id high, id low)."""
    assert len(data) % 4 == 0
    packets = [data[i:i + 4] for i in range(0, len(data), 4)]
    assert all(p[:2] == b"\x40\x02" for p in packets)
    return [int.from_bytes(p[2:], "big") for p in packets]


class Session:
    """What the MQTT session does with the tracker: told once PUBACKs wait, takes them at its write."""

    def __init__(self) -> None:
        self.woken = 0
        self.tracker = AckTracker(self.wake)

    def wake(self) -> None:
        self.woken += 1

    def written(self) -> list[int]:
        return _pubacks(self.tracker.take())


def test_acks_go_out_in_receive_order_once_settled() -> None:
    session = Session()
    tracker = session.tracker
    first, second, third = tracker.track(11, 1), tracker.track(12, 1), tracker.track(13, 1)
    third.settle()
    second.settle()
    assert session.written() == []
    assert session.woken == 0
    assert tracker.in_flight == 3
    first.settle()
    assert session.woken == 1
    assert session.written() == [11, 12, 13]
    assert tracker.in_flight == 0
    assert tracker.acked == 3


def test_the_session_is_woken_once_per_write() -> None:
    session = Session()
    tickets = [session.tracker.track(mid, 1) for mid in (1, 2, 3)]
    tickets[0].settle()
    tickets[1].settle()
    assert session.woken == 1  # the second PUBACK joins the first one's write
    assert session.written() == [1, 2]
    tickets[2].settle()
    assert session.woken == 2
    assert session.written() == [3]


def test_packet_ids_are_written_big_endian() -> None:
    session = Session()
    session.tracker.track(0x1234, 1).settle()
    assert session.tracker.take() == b"\x40\x02\x12\x34"
    session.tracker.track(65535, 1).settle()
    assert session.written() == [65535]


def test_qos0_messages_are_not_acked_but_do_not_block() -> None:
    session = Session()
    zero, one = session.tracker.track(0, 0), session.tracker.track(5, 1)
    one.settle()
    zero.settle()
    assert session.written() == [5]
    assert session.tracker.acked == 1


def test_settling_twice_acks_once() -> None:
    session = Session()
    ticket = session.tracker.track(1, 1)
    ticket.settle()
    ticket.settle()
    assert session.written() == [1]
    assert session.tracker.acked == 1


def test_after_close_nothing_more_is_acked_but_what_was_due_stays() -> None:
    session = Session()
    due, unsettled = session.tracker.track(1, 1), session.tracker.track(2, 1)
    due.settle()
    session.tracker.close()
    unsettled.settle()
    assert session.written() == [1]
    assert session.tracker.in_flight == 0
