"""The rules: small ``__slots__`` callables that precompute in ``__init__`` and work in ``__call__``.

Reading rules take one accepted ``Reading`` of their device type and report a condition to the
``Tracker`` (True / False / None = hysteresis band). Time rules (``Silence``, ``CoverageRule``,
``CompletenessRule``) are called with the event time ``now_ms`` every evaluation interval.
Per-series memory (windows, counters) lives in the rule, keyed by device id.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from citytelemetry.alerts.lifecycle import Tracker
from citytelemetry.alerts.model import RuleInfo, Subject
from citytelemetry.records import FieldValue, Reading

if TYPE_CHECKING:
    from citytelemetry.alerts.peers import SiteTallies

MAD_SCALE = 1.4826  # MAD x 1.4826 estimates the standard deviation of normal data


class ReadingRule:
    """A rule over single readings. A native base class rather than a ``Callable``: mypyc calls
    ``rule.__call__(reading)`` on it through the vtable, without Python's call protocol."""

    __slots__ = ()

    def __call__(self, reading: Reading) -> None:
        raise NotImplementedError


def _number(value: FieldValue | None) -> float | None:
    """Numbers only: bool is an int in Python but never a level. type(), not __class__: a generic getattr."""
    if type(value) is float:
        return value
    if type(value) is int:
        return float(value)
    return None


class OpenAlerts:
    """Whether a rule's alert is open on a device's subject (pending or firing in ``Tracker.open``).

    ``Tracker.is_open`` builds its key from the interpreted RuleInfo and Subject (two getattr and a tuple)
    and looks it up whatever is open; here the rule's own set of open subjects is asked, empty most of
    the time, and a device's subject key is read once.
    """

    __slots__ = ("_keys", "_open")

    def __init__(self, info: RuleInfo, tracker: Tracker) -> None:
        self._open = tracker.open_of(info.key)
        self._keys: dict[str, str] = {}  # device -> its subject's key

    def on(self, device_id: str, subjects: Mapping[str, Subject]) -> bool:
        """``subjects``: the rule's device -> subject (the device itself, or its group)."""
        if not self._open:
            return False
        key = self._keys.get(device_id)
        if key is None:
            key = self._keys[device_id] = subjects[device_id].key
        return key in self._open


class Threshold(ReadingRule):
    """A profile level on one side: fires past ``level``, clears back past ``clear`` (hysteresis)."""

    __slots__ = ("clear", "field", "high", "info", "level", "opened", "subjects", "tracker")

    def __init__(self, info: RuleInfo, field: str, level: float, clear: float, *, high: bool,
                 tracker: Tracker, subjects: Mapping[str, Subject]) -> None:
        self.info, self.field, self.level, self.clear, self.high = info, field, level, clear, high
        self.tracker, self.subjects = tracker, subjects
        self.opened = OpenAlerts(info, tracker)

    def __call__(self, reading: Reading) -> None:
        """Alone (tests, bench/breakdown.py); the observer calls ``Thresholds``, once per field."""
        v = _number(reading.fields.get(self.field))
        if v is not None:
            self.judge(reading, v)

    # An int value compares as a float: the same below 2**53, and validated values are far below.
    def judge(self, reading: Reading, v: float) -> None:
        if self.high:
            active = True if v >= self.level else (None if v >= self.clear else False)
        else:
            active = True if v <= self.level else (None if v <= self.clear else False)
        if active is True or self.opened.on(reading.device_id, self.subjects):
            self.tracker.update(self.info, self.subjects[reading.device_id], active, v, self.level,
                                reading.timestamp_ms)


class Thresholds(ReadingRule):
    """The profile levels of one field (high/low x warning/critical, in compile order): the value is read
    and unboxed once for all of them, and compared natively."""

    __slots__ = ("field", "levels")

    def __init__(self, field: str, levels: Sequence[Threshold]) -> None:
        self.field, self.levels = field, tuple(levels)

    def __call__(self, reading: Reading) -> None:
        raw = reading.fields.get(self.field)
        if type(raw) is float:
            v = raw
        elif type(raw) is int:
            v = float(raw)
        else:  # absent, or not a number (bool is never a level)
            return
        for level in self.levels:
            level.judge(reading, v)


class States(ReadingRule):
    """An enum in one of the profile's warning or critical states."""

    __slots__ = ("field", "info", "opened", "states", "subjects", "tracker")

    def __init__(self, info: RuleInfo, field: str, states: Sequence[str], *, tracker: Tracker,
                 subjects: Mapping[str, Subject]) -> None:
        self.info, self.field, self.states = info, field, frozenset(states)
        self.tracker, self.subjects = tracker, subjects
        self.opened = OpenAlerts(info, tracker)

    def __call__(self, reading: Reading) -> None:
        state = reading.fields.get(self.field)
        if state is None:
            return
        active = state in self.states
        if active or self.opened.on(reading.device_id, self.subjects):
            self.tracker.update(self.info, self.subjects[reading.device_id], active, 1.0 if active else 0.0, None,
                                reading.timestamp_ms, str(state))


class RateOfChange(ReadingRule):
    """Slope over a window of device time, in units per minute; rise (or fall) at ``per_min`` or faster."""

    __slots__ = ("clear", "field", "history", "info", "min_span_ms", "opened", "per_min", "sign", "subjects",
                 "tracker", "window_ms")

    def __init__(self, info: RuleInfo, field: str, *, per_min: float, window_s: float, clear_fraction: float,
                 rise: bool, tracker: Tracker, subjects: Mapping[str, Subject]) -> None:
        self.info, self.field, self.per_min = info, field, per_min
        self.clear = per_min * clear_fraction
        self.sign = 1.0 if rise else -1.0
        self.window_ms = int(window_s * 1000)
        self.min_span_ms = self.window_ms // 2
        self.tracker, self.subjects = tracker, subjects
        self.opened = OpenAlerts(info, tracker)
        self.history: dict[str, RateHistory] = {}

    def __call__(self, reading: Reading) -> None:
        v = _number(reading.fields.get(self.field))
        if v is None:
            return
        ts = reading.timestamp_ms
        history = self.history.get(reading.device_id)
        if history is None:
            history = self.history[reading.device_id] = RateHistory()
        history.push(ts, v, self.window_ms)
        first_ts, first_v = history.times[history.head], history.values[history.head]
        if ts - first_ts < self.min_span_ms:
            return
        rate = self.sign * (v - first_v) * 60_000 / (ts - first_ts)
        active = True if rate >= self.per_min else (None if rate >= self.clear else False)
        if active is True or self.opened.on(reading.device_id, self.subjects):
            self.tracker.update(self.info, self.subjects[reading.device_id], active, rate, self.per_min, ts)


class RateHistory:
    """One device's points of a rate-of-change window, oldest first from ``head``: two native lists and
    an index instead of a deque of tuples (a deque's items and methods are generic calls in mypyc)."""

    __slots__ = ("head", "times", "values")

    def __init__(self) -> None:
        self.times: list[int] = []
        self.values: list[float] = []
        self.head = 0

    def push(self, ts: int, v: float, window_ms: int) -> None:
        """Add a point; drop those more than ``window_ms`` older (never the newest)."""
        times = self.times
        times.append(ts)
        self.values.append(v)
        while ts - times[self.head] > window_ms:
            self.head += 1
        if self.head > 32 and 2 * self.head > len(times):  # shed the dropped points now and then
            del times[:self.head]
            del self.values[:self.head]
            self.head = 0


class FlatLine(ReadingRule):
    """QARTOD flat-line: the same value (within ``tolerance``) for ``min_count`` readings and ``min_duration``."""

    __slots__ = ("field", "info", "min_count", "min_duration_ms", "opened", "runs", "subjects", "tolerance",
                 "tracker")

    def __init__(self, info: RuleInfo, field: str, *, tolerance: float, min_duration_s: float, min_count: int,
                 tracker: Tracker, subjects: Mapping[str, Subject]) -> None:
        self.info, self.field, self.tolerance, self.min_count = info, field, tolerance, min_count
        self.min_duration_ms = int(min_duration_s * 1000)
        self.tracker, self.subjects = tracker, subjects
        self.opened = OpenAlerts(info, tracker)
        self.runs: dict[str, list[float]] = {}  # device -> [reference value, count, since_ms]

    def __call__(self, reading: Reading) -> None:
        v = _number(reading.fields.get(self.field))
        if v is None:
            return
        ts = reading.timestamp_ms
        run = self.runs.get(reading.device_id)
        if run is None:
            run = self.runs[reading.device_id] = [v, 1.0, float(ts)]
        elif abs(v - run[0]) > self.tolerance:  # a new run, in place: no list and dict store per reading
            run[0], run[1], run[2] = v, 1.0, float(ts)
        else:
            run[1] += 1.0
        held_ms = ts - run[2]
        active = run[1] >= self.min_count and held_ms >= self.min_duration_ms
        if active or self.opened.on(reading.device_id, self.subjects):
            self.tracker.update(self.info, self.subjects[reading.device_id], active, v, None, ts,
                                f"{held_ms / 1000:.0f} s")


class HampelRule(ReadingRule):
    """Hampel filter: |x - median| > max(k x 1.4826 x MAD, floor) over the previous ``window`` values,
    for ``min_outliers`` readings in a row. Outliers enter the window, so a level shift is absorbed."""

    __slots__ = ("field", "floor", "info", "k", "min_outliers", "opened", "series", "subjects", "tracker", "window")

    def __init__(self, info: RuleInfo, field: str, *, window: int, k: float, floor: float, min_outliers: int,
                 tracker: Tracker, subjects: Mapping[str, Subject]) -> None:
        self.info, self.field, self.window, self.k, self.floor = info, field, window, k * MAD_SCALE, floor
        self.min_outliers = min_outliers
        self.tracker, self.subjects = tracker, subjects
        self.opened = OpenAlerts(info, tracker)
        self.series: dict[str, HampelWindow] = {}

    def __call__(self, reading: Reading) -> None:
        v = _number(reading.fields.get(self.field))
        if v is None:
            return
        series = self.series.get(reading.device_id)
        if series is None:
            series = self.series[reading.device_id] = HampelWindow(self.window)
        if len(series.ring) < self.window:
            series.push(v)
            return
        ordered = series.ordered  # the previous values: push(v) only once the limits are known
        median = ordered[self.window // 2]
        deviation = abs(v - median)
        # The limit is at least the floor: within it, no reading is an outlier whatever the MAD, so the
        # second sort is left out for most readings (normal data stays within the floor).
        limit = self._limit(ordered, median) if deviation > self.floor else self.floor
        series.streak = series.streak + 1 if deviation > limit else 0
        active = True if series.streak >= self.min_outliers else (False if series.streak == 0 else None)
        report = active is True or self.opened.on(reading.device_id, self.subjects)
        if report and deviation <= self.floor:
            limit = self._limit(ordered, median)  # the detail names the real limit
        series.push(v)
        if report:
            self.tracker.update(self.info, self.subjects[reading.device_id], active, v, median, reading.timestamp_ms,
                                f"median {median:.4g}, limit ±{limit:.3g}")

    def _limit(self, ordered: list[float], median: float) -> float:
        mad = sorted(abs(x - median) for x in ordered)[self.window // 2]
        return max(self.k * mad, self.floor)


class HampelWindow:
    """One device's last ``size`` values for a Hampel rule: in arrival order (a ring) and sorted, kept
    sorted by binary insertion instead of a sort per reading. A new value goes after its equals and
    the oldest leaves as the first of its equals, so ``ordered`` is always exactly sorted(arrival order)
    (a stable sort: 0.0 and -0.0 too keep arrival order; NaN never gets here, validate/decode.py refuses
    it). Also the outlier streak."""

    __slots__ = ("head", "ordered", "ring", "size", "streak")

    def __init__(self, size: int) -> None:
        self.size, self.head, self.streak = size, 0, 0
        self.ring: list[float] = []
        self.ordered: list[float] = []

    def push(self, v: float) -> None:
        ordered, ring = self.ordered, self.ring
        if len(ring) < self.size:
            ring.append(v)
        else:
            ordered.pop(_first_of(ordered, ring[self.head]))  # not del: a generic call in mypyc
            ring[self.head] = v
            self.head = (self.head + 1) % self.size
        ordered.insert(_insert_at(ordered, v), v)


def _insert_at(ordered: list[float], v: float) -> int:
    """bisect.bisect_right (after the equals of ``v``) on native floats; bisect compares boxed ones."""
    lo, hi = 0, len(ordered)
    while lo < hi:
        mid = (lo + hi) // 2
        if v < ordered[mid]:
            hi = mid
        else:
            lo = mid + 1
    return lo


def _first_of(ordered: list[float], v: float) -> int:
    """bisect.bisect_left (the first of the equals of ``v``) on native floats."""
    lo, hi = 0, len(ordered)
    while lo < hi:
        mid = (lo + hi) // 2
        if ordered[mid] < v:
            lo = mid + 1
        else:
            hi = mid
    return lo


# --- group rules: over the devices of one compartment or unit -----------------------------------


@dataclass(slots=True, frozen=True)
class Test:
    """One condition of a composite rule, on one measurement of one device type."""

    field: str
    above: float | None = None
    below: float | None = None
    clear: float | None = None
    states: frozenset[str] = frozenset()

    def holds(self, value: FieldValue, was: bool) -> bool:
        if self.states:
            text = str(value).lower() if isinstance(value, bool) else value
            return text in self.states
        v = _number(value)
        if v is None:
            return was
        if self.above is not None:
            return v >= self.above or (was and self.clear is not None and v >= self.clear)
        assert self.below is not None
        return v <= self.below or (was and self.clear is not None and v <= self.clear)


class Composite(ReadingRule):
    """Every condition holds at once, each for at least one (fresh) device of the group."""

    __slots__ = ("by_device", "groups", "info", "latest", "max_age_ms", "opened", "tests", "tracker")

    def __init__(self, info: RuleInfo, tests: Mapping[str, Sequence[tuple[int, Test]]], groups: Mapping[str, Subject],
                 n_tests: int, *, max_age_s: float, tracker: Tracker) -> None:
        self.info, self.groups, self.tracker = info, groups, tracker
        self.tests = {k: tuple(v) for k, v in tests.items()}  # a dict: .get on a Mapping is a method call
        self.max_age_ms = int(max_age_s * 1000)
        self.opened = OpenAlerts(info, tracker)
        # group key -> per test: device -> (ts, holds, value)
        self.latest: dict[str, list[dict[str, tuple[int, bool, float]]]] = {
            subject.key: [{} for _ in range(n_tests)] for subject in groups.values()}
        self.by_device = {d: self.latest[s.key] for d, s in groups.items()}  # without a Subject's getattr per reading

    def __call__(self, reading: Reading) -> None:
        per_test = self.by_device.get(reading.device_id)
        tests = self.tests.get(reading.measurement)
        if per_test is None or tests is None:
            return
        ts = reading.timestamp_ms
        for index, test in tests:
            value = reading.fields.get(test.field)
            if value is None:
                continue
            previous = per_test[index].get(reading.device_id)
            holds = test.holds(value, previous[1] if previous is not None else False)  # not a boxed tuple's truth
            per_test[index][reading.device_id] = (ts, holds, _number(value) or 0.0)
        oldest = ts - self.max_age_ms
        values: list[float] = []
        for index, members in enumerate(per_test):
            holding = [v for t, h, v in members.values() if h and t >= oldest]
            if not holding:
                active = False
                break
            if index == 0:
                values = holding
        else:
            active = True
        if active or self.opened.on(reading.device_id, self.groups):
            self.tracker.update(self.info, self.groups[reading.device_id], active, max(values, default=0.0),
                                self._threshold(), ts)

    def _threshold(self) -> float | None:
        first = next((t for tests in self.tests.values() for i, t in tests if i == 0), None)
        return None if first is None else (first.above if first.above is not None else first.below)


class NeighbourSpread(ReadingRule):
    """Sensors of one type in one group disagree: max - min of their fresh latest values."""

    __slots__ = ("by_device", "clear", "field", "groups", "info", "latest", "limit", "max_age_ms", "opened", "tracker")

    def __init__(self, info: RuleInfo, field: str, groups: Mapping[str, Subject], *, limit: float, clear: float,
                 max_age_s: float, tracker: Tracker) -> None:
        self.info, self.field, self.groups, self.limit, self.clear = info, field, groups, limit, clear
        self.max_age_ms = int(max_age_s * 1000)
        self.tracker = tracker
        self.opened = OpenAlerts(info, tracker)
        # group key -> device -> (ts, value); by_device: a device's group, without a Subject's getattr
        self.latest: dict[str, dict[str, tuple[int, float]]] = {s.key: {} for s in groups.values()}
        self.by_device = {d: self.latest[s.key] for d, s in groups.items()}

    def __call__(self, reading: Reading) -> None:
        members = self.by_device.get(reading.device_id)
        v = _number(reading.fields.get(self.field))
        if members is None or v is None:
            return
        ts = reading.timestamp_ms
        members[reading.device_id] = (ts, v)
        # max(fresh) - min(fresh) in one pass: two-argument max/min of floats compile to C, not builtins calls
        oldest, n, low, high = ts - self.max_age_ms, 0, 0.0, 0.0
        for t, x in members.values():
            if t >= oldest:
                if n == 0:
                    low = high = x
                else:
                    high = max(high, x)
                    low = min(low, x)
                n += 1
        if n < 2:
            return
        spread = high - low
        active = True if spread > self.limit else (False if spread <= self.clear else None)
        if active is True or self.opened.on(reading.device_id, self.groups):
            self.tracker.update(self.info, self.groups[reading.device_id], active, spread, self.limit, ts)


# --- time rules: silence, coverage, completeness ------------------------------------------------


class Presence:
    """When each device was last heard (event time), and which ones said "offline" (last will)."""

    __slots__ = ("last_seen", "offline_since")

    def __init__(self) -> None:
        self.last_seen: dict[str, int] = {}
        self.offline_since: dict[str, int] = {}

    def heard(self, device_id: str, now_ms: int) -> None:
        self.last_seen[device_id] = now_ms
        offline = self.offline_since
        if offline and device_id in offline:  # not pop(device_id, None): a method lookup per reading
            del offline[device_id]

    def status(self, device_id: str, *, online: bool, now_ms: int) -> None:
        if online:
            self.heard(device_id, now_ms)
        else:
            self.offline_since.setdefault(device_id, now_ms)
            self.last_seen.setdefault(device_id, now_ms)


class Silence:
    """A device silent for k x its reporting interval, or "offline" (last will) for ``offline_for``.

    When ``mass_share`` or more of a system's devices are silent at once, that is one incident (the feed,
    the broker, a gateway, a stopped simulator), not hundreds of device faults: no new device alert is
    raised in that system (open ones stay) and the completeness and coverage rules report it once.
    """

    __slots__ = ("groups", "info", "limits", "mass_share", "offline_ms", "presence", "subjects", "tracker")

    def __init__(self, info: RuleInfo, limits: Mapping[str, int], *, offline_for_s: float, presence: Presence,
                 tracker: Tracker, subjects: Mapping[str, Subject], groups: Mapping[str, str] | None = None,
                 mass_share: float = 1.0) -> None:
        self.info, self.limits, self.presence, self.tracker, self.subjects = info, limits, presence, tracker, subjects
        self.offline_ms = int(offline_for_s * 1000)
        self.groups, self.mass_share = groups or {}, mass_share  # device -> its site/system

    def _mass_silent(self, now_ms: int) -> set[str]:
        last_seen, offline = self.presence.last_seen, self.presence.offline_since
        total: dict[str, int] = {}
        silent: dict[str, int] = {}
        for device_id, limit in self.limits.items():  # of the devices heard at all
            seen = last_seen.get(device_id)
            if seen is None:
                continue
            group = self.groups.get(device_id, "")
            total[group] = total.get(group, 0) + 1
            if device_id in offline or now_ms - seen > limit:
                silent[group] = silent.get(group, 0) + 1
        return {g for g, n in silent.items() if g and n >= self.mass_share * total[g] and n > 1}

    def __call__(self, now_ms: int) -> None:
        last_seen, offline = self.presence.last_seen, self.presence.offline_since
        held_back = self._mass_silent(now_ms) if self.mass_share < 1 else set()
        for device_id, limit in self.limits.items():
            seen = last_seen.get(device_id)
            if seen is None:
                continue
            silent_ms = now_ms - seen
            since = offline.get(device_id)
            subject = self.subjects[device_id]
            if held_back and self.groups.get(device_id) in held_back and not self.tracker.is_open(self.info, subject):
                continue
            if since is not None and now_ms - since >= self.offline_ms:
                detail, active = "reported offline (last will)", True
            elif silent_ms > limit:
                detail, active = f"silent for {silent_ms / 1000:.0f} s", True
            elif self.tracker.is_open(self.info, subject):
                detail, active = "reporting again", False
            else:
                continue
            self.tracker.update(self.info, subject, active, silent_ms / 1000, limit / 1000,
                                now_ms if active else max(now_ms, seen), detail)


class CoverageRule:
    """Share of the devices of a site's system heard within k x their interval (devices not yet due
    for a first reading are left out, so a fresh start is not a coverage collapse). Partitioned: over
    every member, through ``site`` (alerts/peers.py)."""

    __slots__ = ("clock_start", "groups", "info", "min_ratio", "presence", "site", "tracker")

    def __init__(self, info: RuleInfo, groups: Mapping[Subject, Mapping[str, int]], *, min_ratio: float,
                 presence: Presence, tracker: Tracker, clock_start: list[int | None]) -> None:
        self.info, self.groups, self.min_ratio, self.presence, self.tracker = info, groups, min_ratio, presence, tracker
        self.clock_start = clock_start  # [event time of the first reading], shared and set later
        self.site: SiteTallies | None = None

    def __call__(self, now_ms: int) -> None:
        start = self.clock_start[0]
        if start is None:
            return
        last_seen = self.presence.last_seen
        for subject, limits in self.groups.items():
            due = covered = 0
            for device_id, limit in limits.items():
                seen = last_seen.get(device_id)
                if seen is not None:
                    due += 1
                    covered += now_ms - seen <= limit
                elif now_ms - start > limit:
                    due += 1
            num, den, detail = float(covered), float(due), f"{covered} of {due} devices"
            if self.site is not None:
                total = self.site.combine(self.info.key, subject.key, (num, den))
                if total.unknown:
                    continue
                num, den, detail = total.num, total.den, total.detail("devices")
            if not den:
                continue
            ratio = num / den
            active = True if ratio < self.min_ratio else (None if ratio < self.min_ratio + 0.01 else False)
            if active is True or self.tracker.is_open(self.info, subject):
                self.tracker.update(self.info, subject, active, 100 * ratio, 100 * self.min_ratio, now_ms, detail)


class BucketCounts:
    """Readings per bucket of event time, of one subject. The bucket being filled is counted in native
    ints and moved into ``by_bucket`` when another one starts or before the counts are read
    (``settle``): per reading a compare and an add, not a dict get and set of a boxed key."""

    __slots__ = ("by_bucket", "current", "pending")

    def __init__(self) -> None:
        self.by_bucket: dict[int, int] = {}
        self.current = self.pending = 0

    def add(self, bucket: int) -> None:
        if bucket != self.current:
            self.settle()
            self.current = bucket
        self.pending += 1

    def settle(self) -> None:
        if self.pending:
            self.by_bucket[self.current] = self.by_bucket.get(self.current, 0) + self.pending
            self.pending = 0


class CompletenessCount(ReadingRule):
    """The per-reading half of ``CompletenessRule``: one more reading in its subject's bucket."""

    __slots__ = ("bucket_ms", "device_buckets")

    def __init__(self, device_buckets: dict[str, BucketCounts], bucket_ms: int) -> None:
        self.device_buckets, self.bucket_ms = device_buckets, bucket_ms

    def __call__(self, reading: Reading) -> None:
        counts = self.device_buckets.get(reading.device_id)
        if counts is not None:
            counts.add(reading.timestamp_ms // self.bucket_ms)


class CompletenessRule:
    """Readings received / expected over a window of event time, per site and system. Partitioned: over
    every member, through ``site`` (alerts/peers.py)."""

    __slots__ = ("bucket_ms", "buckets", "clock_start", "count", "expected", "info", "members", "min_ratio", "site",
                 "tracker", "window_ms")

    def __init__(self, info: RuleInfo, members: Mapping[str, Subject], expected: Mapping[Subject, float], *,
                 window_s: float, min_ratio: float, tracker: Tracker, clock_start: list[int | None]) -> None:
        self.info, self.members, self.expected, self.min_ratio, self.tracker = (
            info, members, expected, min_ratio, tracker)
        self.window_ms = int(window_s * 1000)
        self.bucket_ms = max(1000, self.window_ms // 60)
        self.buckets: dict[Subject, BucketCounts] = {s: BucketCounts() for s in expected}
        # device -> its subject's buckets: per reading a str lookup, not a Subject's hash (every label)
        self.count = CompletenessCount({d: self.buckets[s] for d, s in members.items() if s in self.buckets},
                                       self.bucket_ms)
        self.clock_start = clock_start
        self.site: SiteTallies | None = None

    def __call__(self, now_ms: int) -> None:
        start = self.clock_start[0]
        if start is None or now_ms - start < self.window_ms:
            return
        first = (now_ms - self.window_ms) // self.bucket_ms + 1
        last = now_ms // self.bucket_ms - 1  # whole buckets only: the current one is still filling
        span_ms = (last - first + 1) * self.bucket_ms
        for subject, per_window in self.expected.items():
            counts = self.buckets[subject]
            counts.settle()
            buckets = counts.by_bucket
            for b in [b for b in buckets if b < first]:
                del buckets[b]
            received: float = sum(n for b, n in buckets.items() if b <= last)
            expected = per_window * span_ms / self.window_ms
            detail = f"{received:.0f} of {expected:.0f} readings"
            if self.site is not None:
                total = self.site.combine(self.info.key, subject.key, (received, expected),
                                          scale=span_ms / self.window_ms, unjudged_unmonitored=False)
                if total.unknown:
                    continue
                received, expected, detail = total.num, total.den, total.detail("readings")
            ratio = received / expected if expected else 1.0
            active = True if ratio < self.min_ratio else (None if ratio < self.min_ratio + 0.02 else False)
            if active is True or self.tracker.is_open(self.info, subject):
                self.tracker.update(self.info, subject, active, 100 * ratio, 100 * self.min_ratio, now_ms, detail)
