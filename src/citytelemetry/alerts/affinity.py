"""What a partitioned member's alert rules see: its own share of the devices, in whole groups.

``member_catalog``: rules are compiled over the devices the member owns, so coverage's due devices and
completeness's expected readings are its share, not the whole site with the other members' devices
counted as never heard (the site figure over every member is alerts/peers.py's).

A group whose devices could land in different members is refused:

A composite or neighbour-spread rule judges a group (a compartment, a unit) from the latest values of
all its devices. In a partitioned member (``pipeline.partition``) it sees only the devices that member
owns, so a group split across members can miss a real incident (gas in one member, the stopped fan in
another) or a real disagreement. A group stays whole in every member count only if all its devices have
the same affinity key (ingest/partition.py: the site and the ``pipeline.partition_by`` location values),
i.e. when the rule's ``group_by`` includes every ``partition_by`` key and its devices have them.

Refused rather than logged: the rules a split hurts are the safety ones, and a warning in a log is not
where an operator learns that "gas without ventilation" no longer fires. The fix is named in the error:
add the keys to ``group_by``, or partition by what the rule groups by.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from citytelemetry.alerts import rulefiles as rf
from citytelemetry.config import PipelineSettings
from citytelemetry.ingest.partition import Partition, affinity_key
from citytelemetry.profiles import Catalog


def member_catalog(pipeline: PipelineSettings, catalog: Catalog, rules: Iterable[rf.FileRule]) -> Catalog:
    """The devices this member owns (every device when not partitioned); raises ``AlertRuleError`` when a
    group rule's groups could span members."""
    if pipeline.partition is None:
        return catalog
    problems = split_groups(catalog, rules, pipeline.partition_by)
    if problems:
        raise rf.AlertRuleError([
            f"pipeline.partition with partition_by {list(pipeline.partition_by)}: {p}; give the rule a group_by "
            "that includes every partition_by key, or partition by keys its groups share (docs/delivery.md)"
            for p in problems])
    part = Partition.of(pipeline.partition, catalog.devices.values(), pipeline.partition_by)
    return Catalog(profiles=catalog.profiles,
                   devices={i: d for i, d in catalog.devices.items() if part.owns(i)})


def split_groups(catalog: Catalog, rules: Iterable[rf.FileRule], partition_by: Iterable[str]) -> list[str]:
    """One line per group rule whose groups could span members, naming a group and its affinity keys."""
    by = tuple(partition_by)
    out = []
    for rule in rules:
        if isinstance(rule, rf.Composite):
            types = {c.type for c in rule.when}
        elif isinstance(rule, rf.NeighbourSpread):
            types = {rule.type}
        else:
            continue
        keys: dict[tuple[str, ...], set[str]] = defaultdict(set)
        for d in catalog.devices.values():
            if d.profile.type not in types:
                continue
            values = tuple(d.location.get(k) for k in rule.group_by)
            if all(v is not None for v in values):  # as compile.py: a device without the keys is in no group
                keys[(d.site, d.system.value, *values)].add(affinity_key(d, by))  # type: ignore[arg-type]
        split = {group: k for group, k in keys.items() if len(k) > 1}
        if split:
            group, spread = min(split.items())
            out.append(f"{rule.name}: {len(split)} of its {len(keys)} groups "
                       f"(group_by {rule.group_by}) would span members, e.g. {'/'.join(group)} with "
                       f"{len(spread)} affinity keys ({', '.join(sorted(spread)[:3])}"
                       f"{', …' if len(spread) > 3 else ''})")
    return out

