"""``citytelemetry alerts list | replay | firing``.

    alerts list                                  every rule, as generated from the profiles and alert_rules/
    alerts replay --scenario gas_leak [--rule N]  simulated data through the rules: what would fire, when
    alerts replay --from T1 --to T2 [--type T]   recorded data (InfluxDB 1.x) through the rules
    alerts firing                                what Alertmanager has active now (else the state file)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

import aiohttp

from citytelemetry.cli.times import time_ms
from citytelemetry.config import Settings
from citytelemetry.profiles import Catalog, load_catalog
from citytelemetry.records import Reading

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    alerts = commands.add_parser("alerts", help="alert rules: list them, replay data through them, show what fires")
    actions = alerts.add_subparsers(dest="alerts_action", required=True)
    listing = actions.add_parser("list", help="every rule, generated from the profiles and alert_rules/")
    listing.add_argument("--json", action="store_true", help="one JSON object per rule")
    replay = actions.add_parser("replay", help="replay simulated or recorded data through the rules")
    replay.add_argument("--scenario", help="simulate this incident (python -m simulators --help lists them)")
    replay.add_argument("--duration", type=float, help="simulated seconds (default: the scenario's span + 60)")
    replay.add_argument("--seed", type=int, default=1)
    replay.add_argument("--whole-district", action="store_true",
                        help="simulate every device, not only those the scenario needs")
    replay.add_argument("--from", dest="start", type=time_ms, help="recorded data from (epoch ms or ISO 8601)")
    replay.add_argument("--to", dest="end", type=time_ms, help="recorded data until (default: now)")
    replay.add_argument("--type", dest="types", action="append", help="recorded: device type(s) to read")
    replay.add_argument("--rule", dest="rules", action="append", default=[], help="only this rule (alertname)")
    actions.add_parser("firing", help="active alerts in Alertmanager (the state file if it is unreachable)")


def handle(args: argparse.Namespace, settings: Settings, *, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    catalog = load_catalog(settings.pipeline.profiles_dir, settings.pipeline.inventory_dir)
    if args.alerts_action == "list":
        return _list(settings, catalog, out, as_json=args.json)
    if args.alerts_action == "replay":
        return _replay(args, settings, catalog, out)
    return asyncio.run(_firing(settings, catalog, out))


def _list(settings: Settings, catalog: Catalog, out: TextIO, *, as_json: bool) -> int:
    from citytelemetry.alerts.compile import compile_rules
    from citytelemetry.alerts.lifecycle import Tracker
    from citytelemetry.alerts.rulefiles import load_rule_files

    ruleset = compile_rules(catalog, load_rule_files(settings.alerts.rules_dir, catalog),
                            Tracker(lambda _alert: None), runbook_base=settings.alerts.runbook_base_url)
    for info in ruleset.infos:
        record = {"name": info.name, "severity": info.severity.value, "kind": info.kind, "scope": info.scope,
                  "condition": info.condition, "for_s": info.for_ms / 1000, "source": info.source,
                  "runbook": info.runbook}
        if as_json:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
        else:
            out.write(f"{info.severity.value:<8} {info.name:<40} {info.kind:<18} {info.scope:<22} "
                      f"for {info.for_ms / 1000:g} s: {info.condition}\n")
    if not as_json:
        kinds: dict[str, int] = {}
        for info in ruleset.infos:
            kinds[info.kind] = kinds.get(info.kind, 0) + 1
        out.write(f"{len(ruleset.infos)} rules: " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())) + "\n")
    return EXIT_OK


def _replay(args: argparse.Namespace, settings: Settings, catalog: Catalog, out: TextIO) -> int:
    from citytelemetry.alerts.replay import Replayer, ReplayResult

    if (args.scenario is None) == (args.start is None):
        out.write("alerts replay: give either --scenario (simulated) or --from (recorded)\n")
        return EXIT_USAGE
    if args.scenario is not None:
        from simulators.district import DistrictSimulator, Pacing
        from simulators.scenarios import SCENARIOS

        scenario = SCENARIOS.get(args.scenario)
        if scenario is None:
            out.write(f"unknown scenario {args.scenario!r}; known: {', '.join(sorted(SCENARIOS))}\n")
            return EXIT_USAGE
        run_catalog = catalog if args.whole_district else scenario.focus(catalog)
        sim = DistrictSimulator(run_catalog, seed=args.seed, duration_s=args.duration or scenario.span_s + 60,
                                pacing=Pacing(speed=0), scenario=scenario, topic_prefix=settings.mqtt.topic_prefix)
        replayer = Replayer(settings, run_catalog, only=args.rules)
        for message in [*sim.birth_messages(), *sim.messages()]:
            replayer.message(message.topic, message.payload, message.sim_ms)
        result: ReplayResult = replayer.finish(sim.end_ms)
        origin = sim.start_ms
    else:
        end = args.end or int(datetime.now(tz=UTC).timestamp() * 1000)
        readings = asyncio.run(_recorded(settings, catalog, args.types or sorted(catalog.profiles), args.start, end))
        replayer = Replayer(settings, catalog, only=args.rules)
        for reading in readings:
            replayer.readings([reading])
        result = replayer.finish(end)
        origin = args.start
    out.writelines(f"+{(t.ts_ms - origin) / 1000:7.0f} s  {t.state.value:<8} {t.severity:<8} {t.name:<36} "
                   f"{t.summary}\n" for t in result.transitions)
    out.write(f"{result.readings} readings replayed, {len(result.transitions)} transitions, "
              f"{len(result.still_firing)} still firing at the end\n")
    return EXIT_OK


async def _recorded(settings: Settings, catalog: Catalog, types: Sequence[str], start_ms: int,
                    end_ms: int) -> list[Reading]:
    """Points of ``types`` between the two times, from InfluxDB 1.x (InfluxQL), as readings in time order."""
    readings: list[Reading] = []
    url = settings.influx.url.rstrip("/") + "/query"
    auth = None
    if settings.influx.username and settings.influx.password:
        auth = aiohttp.BasicAuth(settings.influx.username, settings.influx.password.get_secret_value())
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120), auth=auth) as session:
        for type_name in types:
            if type_name not in catalog.profiles:
                continue
            # Names come from the validated profiles and only integers are interpolated.
            query = f'SELECT * FROM "{type_name}" WHERE time >= {start_ms:d}ms AND time <= {end_ms:d}ms'  # noqa: S608
            async with session.post(url, data={"db": settings.influx.database, "q": query, "epoch": "ms"}) as resp:
                body = await resp.json()
            for series in body["results"][0].get("series", []):
                readings.extend(_rows(catalog, type_name, series["columns"], series["values"]))
    readings.sort(key=lambda r: r.timestamp_ms)
    return readings


def _rows(catalog: Catalog, type_name: str, columns: list[str], values: list[list[Any]]) -> Iterator[Reading]:
    keys = set(catalog.profiles[type_name].measurements)
    for row in values:
        record = dict(zip(columns, row, strict=True))
        device = catalog.devices.get(str(record.get("device")))
        if device is None:
            continue
        fields = {k: v for k, v in record.items() if k in keys and v is not None}
        yield Reading(type_name, device.id, device.tags, fields, int(record["time"]), int(record.get("seq") or 0))


async def _firing(settings: Settings, catalog: Catalog, out: TextIO) -> int:
    url = settings.alertmanager.url.rstrip("/") + "/api/v2/alerts"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session, session.get(
                url, params={"active": "true", "silenced": "true", "inhibited": "true"}) as response:
            response.raise_for_status()
            alerts: list[dict[str, Any]] = await response.json()
    except (aiohttp.ClientError, TimeoutError) as exc:
        out.write(f"Alertmanager {url} unreachable ({exc}); from the state file {settings.alerts.state_file}:\n")
        return _firing_from_state(settings, catalog, out)
    for alert in sorted(alerts, key=lambda a: (a["labels"].get("severity", ""), a.get("startsAt", ""))):
        labels, state = alert["labels"], alert.get("status", {}).get("state", "?")
        out.write(f"{labels.get('severity', '?'):<8} {state:<10} {labels.get('alertname', '?'):<36} "
                  f"since {alert.get('startsAt', '?')[:19]}  {alert.get('annotations', {}).get('summary', '')}\n")
    out.write(f"{len(alerts)} active alerts in {settings.alertmanager.url}\n")
    return EXIT_OK


def _firing_from_state(settings: Settings, catalog: Catalog, out: TextIO) -> int:
    try:
        document = json.loads(settings.alerts.state_file.read_bytes())
    except (OSError, ValueError) as exc:
        out.write(f"no readable state file: {exc}\n")
        return EXIT_FAILED
    firing = [a for a in document.get("alerts", []) if a.get("state") == "firing"]
    for alert in firing:
        labels = alert.get("labels", {})
        out.write(f"{labels.get('severity', '?'):<8} firing     {labels.get('alertname', '?'):<36} "
                  f"{alert.get('summary', '')}\n")
    out.write(f"{len(firing)} firing in the state file ({len(catalog.devices)} devices known)\n")
    return EXIT_OK
