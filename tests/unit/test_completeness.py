from __future__ import annotations

from citytelemetry.observability.completeness import CompletenessTracker

from .catalog_fixture import make_catalog

DEVICE = "tun-c001-gas1"


def test_gaps_duplicates_and_out_of_order_from_sequence_numbers() -> None:
    tracker = CompletenessTracker(make_catalog())
    for seq in (1, 2, 3, 6, 7, 10):  # 4, 5, 8, 9 never arrived
        tracker.landed(DEVICE, seq)
    tracker.duplicate(DEVICE)
    tracker.landed(DEVICE, 1)  # a restart: counting starts again
    tracker.landed(DEVICE, 2)
    assert tracker.by_system() == {"tunnel": (8, 12)}
    [line] = tracker.lines(5)
    assert line == (b"ct_completeness,cabin=power,compartment=c001,device=tun-c001-gas1,device_type=tunnel_multigas,"
                    b"site=hunnan,system=tunnel received=8i,expected=12i,gaps=4i,duplicates=1i,out_of_order=1i,"
                    b"completeness=0.6666666666666666 5")
    assert tracker.lines(6) == []  # nothing changed since


def test_complete_stream_is_one() -> None:
    tracker = CompletenessTracker(make_catalog())
    for seq in range(1, 101):
        tracker.landed(DEVICE, seq)
    assert tracker.by_system() == {"tunnel": (100, 100)}
