"""Creating the tiers in the store: 1.x retention policies (applied), 2.x buckets and 3.x (generated text).

1.x: the raw tier is the retention policy the pipeline writes (``influx.retention_policy``, else
``autogen``), each rollup tier a retention policy of its own, and ``ct_meta`` (kept forever) holds
``ct_storage_tiers``: which retention policy dashboards read for which range (docs/storage.md). Needs an
admin (``CREATE``/``ALTER RETENTION POLICY``); the pipeline's write-only and the dashboards' read-only users
keep their grants, which in 1.x cover every retention policy of the database.
"""

from __future__ import annotations

import base64
import ssl
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from citytelemetry.config import InfluxSettings, StorageSettings
from citytelemetry.security.errors import SecurityError
from citytelemetry.security.influx import Account, InfluxAdmin, quote_identifier
from citytelemetry.storage.durations import INFINITE, seconds
from citytelemetry.storage.tiers import rollup_tiers

META_RP = "ct_meta"
TIERS_MEASUREMENT = "ct_storage_tiers"
DEFAULT_RP = "autogen"
_FOREVER_MS = 10**15  # "any range": about 31,000 years


class RetentionError(Exception):
    """A retention policy could not be read, created or changed."""


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    duration: str  # INF or 90d, 730d, ...


@dataclass(frozen=True, slots=True)
class RangeChoice:
    """Dashboards read ``rp`` for time ranges in (min_range_ms, max_range_ms]."""

    tier: str
    rp: str
    min_range_ms: int
    max_range_ms: int


def raw_policy(influx: InfluxSettings) -> str:
    return influx.retention_policy or DEFAULT_RP


def policies(storage: StorageSettings, influx: InfluxSettings) -> list[Policy]:
    return [Policy(raw_policy(influx), storage.raw_retention),
            *(Policy(t.name, t.retention) for t in rollup_tiers(storage)), Policy(META_RP, INFINITE)]


def range_choices(storage: StorageSettings, influx: InfluxSettings) -> list[RangeChoice]:
    tiers = rollup_tiers(storage)
    bounds = [0, *(int(t.use_above_s * 1000) for t in tiers), _FOREVER_MS]
    names = [("raw", raw_policy(influx)), *((t.name, t.name) for t in tiers)]
    return [RangeChoice(tier, rp, bounds[i], bounds[i + 1]) for i, (tier, rp) in enumerate(names)]


def _influx_duration(duration: str) -> str:
    return "INF" if duration == INFINITE else duration


def _same_duration(shown: str, duration: str) -> bool:
    """SHOW RETENTION POLICIES says 2160h0m0s for 90d and 0s for INF."""
    if duration == INFINITE:
        return shown in {"0s", "0"}
    hours, _, rest = shown.partition("h")
    return rest in {"0m0s", ""} and hours.isdigit() and int(hours) * 3600 == seconds(duration)


def statements(storage: StorageSettings, influx: InfluxSettings, existing: dict[str, str] | None = None) -> list[str]:
    """The InfluxQL that brings the database to the tiers (``existing``: name -> duration shown by the server;
    None: as if none existed, for printing)."""
    db = quote_identifier(influx.database)
    out = [f"CREATE DATABASE {db}"] if existing is None else []
    for policy in policies(storage, influx):
        rp, duration = quote_identifier(policy.name), _influx_duration(policy.duration)
        shown = (existing or {}).get(policy.name)
        if existing is None or shown is None:
            out.append(f"CREATE RETENTION POLICY {rp} ON {db} DURATION {duration} REPLICATION 1")
        elif not _same_duration(shown, policy.duration):
            out.append(f"ALTER RETENTION POLICY {rp} ON {db} DURATION {duration}")
    return out


def tier_lines(storage: StorageSettings, influx: InfluxSettings) -> list[str]:
    """The ``ct_storage_tiers`` points (time 0, in ``ct_meta``) that the dashboards' ``rp`` variable reads."""
    return [f'{TIERS_MEASUREMENT},tier={c.tier} rp="{c.rp}",min_range_ms={c.min_range_ms}i,'
            f"max_range_ms={c.max_range_ms}i 0" for c in range_choices(storage, influx)]


def apply_v1(storage: StorageSettings, influx: InfluxSettings, admin: Account | None = None, *,
             ca_file: Path | None = None) -> list[str]:
    """Create or change the retention policies and write the range table; returns the statements run."""
    client = InfluxAdmin(influx.url, admin, ca_file=ca_file or influx.ca_file, timeout_s=influx.timeout_s)
    db = quote_identifier(influx.database)
    try:
        client.query(f"CREATE DATABASE {db}")
        shown = client.query(f"SHOW RETENTION POLICIES ON {db}")
        existing = {row[0]: str(row[1]) for s in shown[0].get("series", []) for row in s["values"]}
        done = statements(storage, influx, existing)
        for statement in done:
            client.query(statement)
    except SecurityError as exc:
        raise RetentionError(str(exc)) from None
    _write(influx, admin, META_RP, "\n".join(tier_lines(storage, influx)), ca_file or influx.ca_file)
    return done


def _write(influx: InfluxSettings, account: Account | None, rp: str, body: str, ca_file: Path | None) -> None:
    query = urllib.parse.urlencode({"db": influx.database, "rp": rp, "precision": "ms"})
    request = urllib.request.Request(f"{influx.url.rstrip('/')}/write?{query}", data=body.encode(), method="POST")  # noqa: S310
    if account is not None:
        token = base64.b64encode(f"{account.username}:{account.password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None) \
        if influx.url.startswith("https:") else None
    try:
        with urllib.request.urlopen(request, timeout=influx.timeout_s, context=context) as response:  # noqa: S310
            if response.status != 204:
                raise RetentionError(f"InfluxDB at {influx.url}: {TIERS_MEASUREMENT} write answered {response.status}")
    except OSError as exc:
        raise RetentionError(f"InfluxDB at {influx.url}: cannot write {TIERS_MEASUREMENT}: {exc}") from None


def influx2_commands(storage: StorageSettings, influx: InfluxSettings) -> list[str]:
    """InfluxDB 2.x: a bucket per tier and the DBRP mappings that let InfluxQL (/query) say ``"rp"."m"``."""
    bucket = influx.bucket or influx.database
    org = f" --org {influx.org}" if influx.org else ""
    out = ["# InfluxDB 2.x: buckets with retention, and DBRP mappings for the InfluxQL /query API",
           "# (run as an operator token; the bucket ids come from `influx bucket list`)"]
    for policy in policies(storage, influx):
        name = bucket if policy.name == raw_policy(influx) else f"{bucket}_{policy.name}"
        retention = "0" if policy.duration == INFINITE else policy.duration
        out.append(f"influx bucket create --name {name} --retention {retention}{org}")
        default = " --default" if policy.name == raw_policy(influx) else ""
        out.append(f"influx v1 dbrp create --db {influx.database} --rp {policy.name} "
                   f"--bucket-id $(influx bucket list --name {name} --hide-headers | cut -f1){default}{org}")
    out.append(f"# then the range table (one line per tier) into {bucket}_{META_RP}:")
    out.extend(f"#   {line}" for line in tier_lines(storage, influx))
    return out


