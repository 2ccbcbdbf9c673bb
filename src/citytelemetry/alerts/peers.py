"""Site figures across partitioned members: each member's tallies, summed with its peers'.

A partitioned member compiles the site rules (coverage, completeness) over its own share of the devices
(alerts/affinity.py); the 90 % coverage target is about the whole site. So every member publishes its
per-subject tallies (coverage: covered and due devices; completeness: received and expected readings)
every evaluation interval (alerts/peerlink.py), and judges each site rule on the sum of its own tally
and its peers' fresh ones. Every member then raises the same alert with the same labels, and
Alertmanager de-duplicates them, as it does for a pair of HA Prometheus servers.

A peer whose last report is older than ``stale_ms`` of wall time (or that has sent none once the
start-up grace is over) counts as its whole share due and uncovered, with the detail naming it: its
devices really are unmonitored. Its whole share comes from the inventory (``whole_shares``), which every
member reads alike. During the grace a missing peer counts nothing: members start one after another.

Only the lowest live member writes the site rules' transitions to ``ct_alerts`` (``writes_history``), so
the history holds one point per transition and not one per member; when it dies, the next one takes over.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from citytelemetry.alerts import rulefiles as rf
from citytelemetry.alerts.compile import RuleSet
from citytelemetry.alerts.rules import CompletenessRule, CoverageRule
from citytelemetry.config import PipelineSettings, Settings
from citytelemetry.ingest.partition import Partition
from citytelemetry.profiles import Catalog

Figure = tuple[float, float]  # (numerator, denominator): (covered, due) or (received, expected)
# rule key -> subject key -> member -> that member's whole share (devices, or readings per window)
WholeShares = dict[str, dict[str, dict[int, float]]]
FORMAT = 1


def rule_key(rule: rf.Named) -> str:
    return f"{rule.name}/{rule.severity.value}"  # as RuleInfo.key


def whole_shares(catalog: Catalog, rules: Iterable[rf.FileRule], part: Partition) -> WholeShares:
    """Per site rule and site/system, each member's share: what its silence costs the site figure."""
    out: WholeShares = {}
    for rule in rules:
        if isinstance(rule, rf.Coverage):
            shares = out[rule_key(rule)] = defaultdict(lambda: defaultdict(float))
            for d in catalog.devices.values():
                if d.system in rule.systems:
                    shares[f"{d.site}/{d.system.value}"][part.owner(d.id)] += 1
        elif isinstance(rule, rf.Completeness):
            shares = out[rule_key(rule)] = defaultdict(lambda: defaultdict(float))
            for d in catalog.devices.values():
                interval = d.profile.reporting_interval_s
                if d.system in rule.systems and interval <= rule.max_interval_s:
                    shares[f"{d.site}/{d.system.value}"][part.owner(d.id)] += rule.window_s / interval
    return {k: {s: dict(m) for s, m in v.items()} for k, v in out.items()}


@dataclass(frozen=True, slots=True)
class Report:
    """What one member published: its tallies at its event-time mark, stamped with its wall clock."""

    member: int
    count: int
    wall_ms: int
    mark_ms: int | None
    figures: Mapping[str, Mapping[str, Figure]]  # rule key -> subject key -> figure
    started_ms: int = 0  # its wall clock at its start: a figure missing in its grace is "not judged yet"

    def encode(self) -> bytes:
        return json.dumps({"format": FORMAT, "member": self.member, "count": self.count, "wall_ms": self.wall_ms,
                           "mark_ms": self.mark_ms, "started_ms": self.started_ms,
                           "figures": {r: {s: list(f) for s, f in by.items()} for r, by in self.figures.items()}},
                          separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def decode(cls, payload: bytes) -> Report:
        """Raises ``ValueError`` (``json.JSONDecodeError`` is one) on anything but a report of this format."""
        data = json.loads(payload)
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError("not a member report of format 1")
        try:
            figures = {str(r): {str(s): (float(f[0]), float(f[1])) for s, f in by.items()}
                       for r, by in data["figures"].items()}
            mark = data["mark_ms"]
            return cls(int(data["member"]), int(data["count"]), int(data["wall_ms"]),
                       None if mark is None else int(mark), figures, int(data["started_ms"]))
        except (KeyError, TypeError, IndexError, AttributeError) as exc:
            raise ValueError(f"malformed member report: {exc!r}") from None


@dataclass(frozen=True, slots=True)
class Sum:
    """A site figure over every member, and why it is not only the fresh members' figures."""

    num: float
    den: float
    members: int  # members whose figures it holds (fresh ones, this one included)
    silent: tuple[str, ...] = ()  # "member 2/3 silent for 31 s: its 113 counted unmonitored"
    # a member is starting (in its grace or ours) and has not judged yet: the figure is not known, so the
    # rule holds (neither fires nor resolves), as the engine holds while the consumer is behind
    unknown: bool = False

    def detail(self, what: str) -> str:
        text = f"{self.num:.0f} of {self.den:.0f} {what} over {self.members} of the members"
        return f"{text}; {'; '.join(self.silent)}" if self.silent else text


@dataclass(slots=True)
class SiteTallies:
    part: Partition
    whole: WholeShares
    stale_ms: int
    grace_ms: int
    wall_ms: Callable[[], int]
    started_wall_ms: int = field(init=False)
    local: dict[str, dict[str, Figure]] = field(default_factory=dict)
    peers: dict[int, Report] = field(default_factory=dict)
    refused: int = 0  # reports that did not decode, or of another member count

    def __post_init__(self) -> None:
        self.started_wall_ms = self.wall_ms()

    def rules(self) -> set[str]:
        return set(self.whole)

    def receive(self, report: Report) -> bool:
        """Keep a peer's newest report; False (and counted) when it is ours or of another partitioning."""
        if report.member == self.part.member:
            return False  # our own, echoed back
        if report.count != self.part.count or not 1 <= report.member <= self.part.count:
            self.refused += 1
            return False
        known = self.peers.get(report.member)
        if known is None or report.wall_ms >= known.wall_ms:
            self.peers[report.member] = report
        return True

    def report(self, mark_ms: int | None) -> Report:
        return Report(self.part.member, self.part.count, self.wall_ms(), mark_ms,
                      {r: dict(by) for r, by in self.local.items()}, self.started_wall_ms)

    def fresh(self, member: int, wall_ms: int) -> bool:
        if member == self.part.member:
            return True
        report = self.peers.get(member)
        return report is not None and wall_ms - report.wall_ms <= self.stale_ms

    def writes_history(self) -> bool:
        """Whether this member is the lowest live one (a peer unheard in the grace counts as live)."""
        wall_ms = self.wall_ms()
        for member in range(1, self.part.member):
            in_grace = member not in self.peers and wall_ms - self.started_wall_ms < self.grace_ms
            if in_grace or self.fresh(member, wall_ms):
                return False
        return True

    def combine(self, rule: str, subject: str, own: Figure, *, scale: float = 1.0,
                unjudged_unmonitored: bool = True) -> Sum:
        """Record this member's ``own`` figure and sum it with the peers'. ``scale`` turns a whole share into
        the same unit as the figures (completeness: the share of the window that was counted).

        A peer that reports but has no figure for the subject has not judged it yet: within its start-up
        grace the sum is unknown; after it, its share counts as unmonitored if ``unjudged_unmonitored``
        (coverage: no reading since its start is no monitoring) and as nothing otherwise (completeness:
        a restarted member judges only once its window has filled)."""
        wall_ms = self.wall_ms()
        self.local.setdefault(rule, {})[subject] = own
        num, den, members, silent, unknown = own[0], own[1], 1, [], False
        shares = self.whole.get(rule, {}).get(subject, {})
        n = self.part.count
        for member in range(1, n + 1):
            if member == self.part.member:
                continue
            report = self.peers.get(member)
            share = shares.get(member, 0.0) * scale
            if self.fresh(member, wall_ms):
                assert report is not None
                members += 1
                figure = report.figures.get(rule, {}).get(subject)
                if figure is not None:
                    num, den = num + figure[0], den + figure[1]
                elif share and wall_ms - report.started_ms < self.grace_ms:
                    unknown = True
                elif share and unjudged_unmonitored:
                    den += share
                    silent.append(f"member {member}/{n} has judged nothing since its start: its {share:.0f} "
                                  "counted unmonitored")
                continue
            if report is None and wall_ms - self.started_wall_ms < self.grace_ms:
                unknown = unknown or bool(share)  # starting up: members start one after another
                continue
            if share:
                den += share
                when = "never heard" if report is None else f"silent for {(wall_ms - report.wall_ms) / 1000:.0f} s"
                silent.append(f"member {member}/{n} {when}: its {share:.0f} counted unmonitored")
        return Sum(num, den, members, tuple(silent), unknown)


def shares_of(pipeline: PipelineSettings, catalog: Catalog, loaded: rf.LoadedRules) -> WholeShares:
    assert pipeline.partition is not None
    return whole_shares(catalog, loaded.rules, Partition.of(pipeline.partition, catalog.devices.values(),
                                                            pipeline.partition_by))


def site_tallies(settings: Settings, catalog: Catalog, loaded: rf.LoadedRules,
                 wall_ms: Callable[[], int]) -> SiteTallies:
    """The tallies of a partitioned member; a peer is stale after ``pipeline.peer_stale_s`` (default four
    evaluation intervals) and, unheard since our start, counts after twice that."""
    p = settings.pipeline
    assert p.partition is not None
    stale_s = p.peer_stale_s if p.peer_stale_s is not None else 4 * settings.alerts.evaluation_interval_s
    part = Partition.of(p.partition, catalog.devices.values(), p.partition_by)
    return SiteTallies(part, whole_shares(catalog, loaded.rules, part), stale_ms=round(stale_s * 1000),
                       grace_ms=round(2 * stale_s * 1000), wall_ms=wall_ms)


def attach(ruleset: RuleSet, tallies: SiteTallies) -> None:
    """The site rules of ``ruleset`` judge the sum over every member."""
    for rule in ruleset.time_rules:
        if isinstance(rule, CoverageRule | CompletenessRule) and rule.info.key in tallies.whole:
            rule.site = tallies
