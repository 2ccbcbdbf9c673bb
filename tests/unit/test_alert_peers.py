"""Site tallies across partitioned members: the sum, staleness, start-up grace, the history writer."""

from __future__ import annotations

import pytest

from citytelemetry.alerts.peers import Report, SiteTallies
from citytelemetry.ingest.partition import Partition

COV = "network_coverage_low/critical"
DONE = "data_completeness_low/warning"
NET = "hunnan/network"
# member -> its whole share: 100, 120 and 110 network devices; 6,000 / 7,200 / 6,600 readings per window
WHOLE = {COV: {NET: {1: 100.0, 2: 120.0, 3: 110.0}}, DONE: {NET: {1: 6000.0, 2: 7200.0, 3: 6600.0}}}


class Wall:
    def __init__(self) -> None:
        self.ms = 1_000_000

    def __call__(self) -> int:
        return self.ms


def tallies(member: int, wall: Wall) -> SiteTallies:
    return SiteTallies(Partition(member, 3), WHOLE, stale_ms=20_000, grace_ms=40_000, wall_ms=wall)


def report(member: int, wall_ms: int, covered: float, due: float, count: int = 3) -> Report:
    return Report(member, count, wall_ms, 5_000, {COV: {NET: (covered, due)}})


def test_fresh_peers_are_summed() -> None:
    wall = Wall()
    site = tallies(1, wall)
    assert site.receive(report(2, wall.ms - 19_000, 118, 120))
    assert site.receive(report(3, wall.ms - 1_000, 100, 110))
    total = site.combine(COV, NET, (95, 100))
    assert (total.num, total.den, total.members, total.silent, total.unknown) == (313, 330, 3, (), False)
    assert total.detail("devices") == "313 of 330 devices over 3 of the members"
    assert site.local == {COV: {NET: (95, 100)}}  # what we publish next


def test_a_stale_peer_counts_as_its_whole_share_due_and_uncovered() -> None:
    wall = Wall()
    site = tallies(1, wall)
    site.receive(report(2, wall.ms, 118, 120))
    site.receive(report(3, wall.ms, 100, 110))
    wall.ms += 20_001  # member 3 stops (killed); member 2 went on reporting
    site.receive(report(2, wall.ms, 118, 120))
    total = site.combine(COV, NET, (95, 100))
    assert (total.num, total.den, total.members) == (213, 330, 2)
    assert total.detail("devices") == ("213 of 330 devices over 2 of the members; member 3/3 silent for 20 s: "
                                       "its 110 counted unmonitored")
    assert 213 / 330 < 0.9


def test_a_peer_never_heard_counts_after_the_grace_and_completeness_scales_its_share() -> None:
    wall = Wall()
    site = tallies(2, wall)
    start = site.combine(DONE, NET, (7000, 7200 * 0.9), scale=0.9)
    assert (start.members, start.unknown) == (1, True)  # starting up: the rule holds until peers report
    wall.ms += 40_000
    later = site.combine(DONE, NET, (7000, 6480), scale=0.9)
    assert (later.num, later.den) == (7000, pytest.approx(6480 + 0.9 * 6000 + 0.9 * 6600))
    assert later.silent == ("member 1/3 never heard: its 5400 counted unmonitored",
                            "member 3/3 never heard: its 5940 counted unmonitored")


def test_a_peer_that_has_not_judged_yet_holds_the_rule_in_its_grace_then_counts_for_coverage() -> None:
    wall = Wall()
    site = tallies(1, wall)
    site.receive(Report(2, 3, wall.ms, None, {}, started_ms=wall.ms - 39_000))  # restarted: no figure yet
    site.receive(report(3, wall.ms, 100, 110))
    total = site.combine(COV, NET, (95, 100))
    assert (total.num, total.den, total.members, total.unknown) == (195, 210, 3, True)  # the rule holds
    wall.ms += 1_000
    site.receive(Report(2, 3, wall.ms, None, {}, started_ms=wall.ms - 40_000))
    site.receive(report(3, wall.ms, 100, 110))
    total = site.combine(COV, NET, (95, 100))
    assert (total.num, total.den, total.members, total.unknown) == (195, 330, 3, False)
    assert total.silent == ("member 2/3 has judged nothing since its start: its 120 counted unmonitored",)
    # completeness: neither peer has a figure (a restarted member's window is still filling): judged on ours
    done = site.combine(DONE, NET, (5900, 6000), unjudged_unmonitored=False)
    assert (done.num, done.den, done.members, done.unknown, done.silent) == (5900, 6000, 3, False, ())


def test_the_newest_report_wins_and_foreign_ones_are_refused() -> None:
    wall = Wall()
    site = tallies(1, wall)
    assert site.receive(report(2, wall.ms, 118, 120))
    assert site.receive(report(2, wall.ms - 5_000, 1, 120))  # a late duplicate: kept the newer
    assert site.peers[2].figures[COV][NET] == (118, 120)
    assert not site.receive(report(1, wall.ms, 0, 100))  # our own, echoed
    assert not site.receive(report(4, wall.ms, 0, 100, count=4))  # another partitioning (a resize)
    assert site.refused == 1


def test_only_the_lowest_live_member_writes_the_history() -> None:
    wall = Wall()
    first, third = tallies(1, wall), tallies(3, wall)
    assert first.writes_history()
    assert not third.writes_history()  # in the grace members 1 and 2 may just be starting
    wall.ms += 40_000
    third.receive(report(2, wall.ms, 118, 120))
    assert not third.writes_history()  # member 2 is live
    wall.ms += 20_001
    assert third.writes_history()  # 1 never heard, 2 stale: 3 is the lowest live member


def test_a_report_round_trips_and_garbage_is_refused() -> None:
    sent = Report(2, 3, 123, None, {COV: {NET: (118.0, 120.0)}}, started_ms=100)
    assert Report.decode(sent.encode()) == sent
    for payload in (b"{", b"[]", b'{"format": 2}', b'{"format": 1, "member": 1}'):
        with pytest.raises(ValueError):
            Report.decode(payload)
