from __future__ import annotations

from citytelemetry.observability.completeness import CompletenessTracker

from .catalog_fixture import make_catalog

DEVICE = "tun-c001-gas1"
T0 = 1_780_000_000_000


def land(tracker: CompletenessTracker, *seqs: int, ts: int = T0) -> None:
    """Each seq lands timestamped 10 s apart in seq order (a late reading keeps its older timestamp)."""
    for seq in seqs:
        tracker.landed(DEVICE, seq, ts + seq * 10_000)


def test_gaps_duplicates_and_a_restart_from_sequence_numbers() -> None:
    tracker = CompletenessTracker(make_catalog())
    land(tracker, 1, 2, 3, 6, 7, 10)  # 4, 5, 8, 9 never arrived
    tracker.duplicate(DEVICE)
    land(tracker, 1, 2, ts=T0 + 3_600_000)  # a restart (newer than everything): counting starts again
    assert tracker.by_system() == {"tunnel": (8, 12)}
    [line] = tracker.lines(5)
    assert line == (b"ct_completeness,cabin=power,compartment=c001,device=tun-c001-gas1,device_type=tunnel_multigas,"
                    b"site=hunnan,system=tunnel received=8i,expected=12i,gaps=4i,duplicates=1i,out_of_order=0i,"
                    b"completeness=0.6666666666666666 5")
    assert tracker.lines(6) == []  # nothing changed since


def test_a_late_reading_fills_its_gap_and_counts_as_out_of_order() -> None:
    tracker = CompletenessTracker(make_catalog())
    land(tracker, 10, 5, 11)  # 5 arrives after 10: 6..9 are still missing
    assert tracker.by_system() == {"tunnel": (3, 7)}
    land(tracker, 9, 6, 8, 7)
    assert tracker.by_system() == {"tunnel": (7, 7)}
    [line] = tracker.lines(1)
    assert b"received=7i,expected=7i,gaps=0i,duplicates=0i,out_of_order=5i,completeness=1.0 1" in line


def test_a_shuffled_stream_ends_complete() -> None:
    tracker = CompletenessTracker(make_catalog())
    order = [50, *range(1, 50), *range(100, 50, -1)]
    land(tracker, *order)
    assert tracker.by_system() == {"tunnel": (100, 100)}


def test_a_duplicate_before_the_first_landing_is_kept() -> None:
    tracker = CompletenessTracker(make_catalog())
    tracker.duplicate(DEVICE)  # the original was accepted, its write not yet durable
    land(tracker, 1)
    assert tracker.devices()[DEVICE].duplicates == 1


def test_complete_stream_is_one() -> None:
    tracker = CompletenessTracker(make_catalog())
    land(tracker, *range(1, 101))
    assert tracker.by_system() == {"tunnel": (100, 100)}
