from __future__ import annotations

from citytelemetry.ingest.acks import AckTracker


def test_acks_go_out_in_receive_order_once_settled() -> None:
    sent: list[int] = []
    tracker = AckTracker(lambda mid, qos: sent.append(mid))
    first, second, third = tracker.track(11, 1), tracker.track(12, 1), tracker.track(13, 1)
    third.settle()
    second.settle()
    assert sent == []
    assert tracker.in_flight == 3
    first.settle()
    assert sent == [11, 12, 13]
    assert tracker.in_flight == 0


def test_qos0_messages_are_not_acked_but_do_not_block() -> None:
    sent: list[tuple[int, int]] = []
    tracker = AckTracker(lambda mid, qos: sent.append((mid, qos)))
    zero, one = tracker.track(0, 0), tracker.track(5, 1)
    one.settle()
    zero.settle()
    assert sent == [(5, 1)]


def test_settling_twice_acks_once() -> None:
    sent: list[int] = []
    tracker = AckTracker(lambda mid, qos: sent.append(mid))
    ticket = tracker.track(1, 1)
    ticket.settle()
    ticket.settle()
    assert sent == [1]
    assert tracker.acked == 1


def test_after_close_nothing_is_acked() -> None:
    sent: list[int] = []
    tracker = AckTracker(lambda mid, qos: sent.append(mid))
    ticket = tracker.track(1, 1)
    tracker.close()
    ticket.settle()
    assert sent == []
    assert tracker.in_flight == 0
