"""``citytelemetry demo``: the main job end to end on local defaults.

Starts the local broker, database and Alertmanager (unless already running), runs the pipeline and
the district simulator side by side for a bounded time (or until Ctrl-C) with live progress, with two
incidents on top of normal operation (a methane leak in one compartment, a CHP engine fault:
``demo_story``), then prints what landed and what was rejected per system, checked against InfluxDB by
an InfluxQL count, and the pages and chat messages Alertmanager sent. The services stay up afterwards
(so the printed hints work) unless ``--stop-services``.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import threading
import time
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import aiohttp

from citytelemetry.cli.demo_story import STORY_END_S, StandInReceivers, demo_scenario, page_lines
from citytelemetry.config import Settings
from citytelemetry.profiles import load_catalog
from citytelemetry.run import Pipeline, make_pipeline
from citytelemetry.security.local import local_credentials
from citytelemetry.services import ManagedService, ServiceError, managed_services, port_is_free
from citytelemetry.storage.retention import RetentionError, apply_v1

if TYPE_CHECKING:
    from simulators.district import DistrictSimulator, Summary

PROGRESS_EVERY_S = 2.0
SETTLE_TIMEOUT_S = 60.0
PAGES_TIMEOUT_S = 45.0  # after the last message: the pager's group interval (30 s) for the resolutions, and slack


def _fault_plan(bad: int) -> dict[str, int]:
    """Spread ``bad`` injected faults over every reason the simulator can produce."""
    from simulators.faults import FAULT_REASONS

    reasons = [str(r) for r in FAULT_REASONS]
    plan = {r: bad // len(reasons) for r in reasons}
    for reason in reasons[: bad % len(reasons)]:
        plan[reason] += 1
    return {r: n for r, n in plan.items() if n}


def _start_services(settings: Settings) -> list[ManagedService]:
    started = []
    for service in managed_services(settings):
        if service.start():
            started.append(service)
        print(f"  {service.status().line()}")
    return started


async def _count_points(settings: Settings, types: list[str], first_ms: int, last_ms: int) -> Counter[str]:
    """InfluxQL: points of the run's time window per system (``seq`` is on every reading's point)."""
    # Names come from the validated profiles and only integers are interpolated: no injection possible.
    sources = ",".join(f'"{name}"' for name in types)
    query = (f"SELECT count(seq) FROM {sources} WHERE time >= {first_ms:d}ms AND time <= {last_ms:d}ms "  # noqa: S608
             "GROUP BY system")
    url = settings.influx.url.rstrip("/") + "/query"
    counts: Counter[str] = Counter()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session, session.post(
            url, data={"db": settings.influx.database, "q": query}) as response:
        body = await response.json()
    for series in body["results"][0].get("series", []):
        counts[series["tags"]["system"]] += series["values"][0][1]
    return counts


def _progress_line(pipeline: Pipeline, published: int, started: float) -> str:
    s = pipeline.stats
    return (f"  {time.monotonic() - started:5.0f} s  published {published:>7}  received {s.messages_received:>7}"
            f"  landed {sum(s.readings_landed.values()):>7}  rejected {sum(s.rejections.values()):>4}"
            f"  buffered {s.write.buffered_lines:>5}")


async def _run(settings: Settings, duration_s: float, rate: float, seed: int, bad: int,
               gateway: tuple[str, str]) -> int:
    from simulators.district import DistrictSimulator, Pacing

    catalog = load_catalog(settings.pipeline.profiles_dir, settings.pipeline.inventory_dir)
    sim = DistrictSimulator(catalog, seed=seed, duration_s=None, max_messages=max(1, int(duration_s * rate)),
                            pacing=Pacing(rate=rate), faults=_fault_plan(bad),
                            topic_prefix=settings.mqtt.topic_prefix, scenario=demo_scenario())
    expected = sim.dry_run()
    first_ms, last_ms = expected.first_ts_ms or sim.start_ms, expected.last_ts_ms or sim.end_ms
    before = await _count_points(settings, sorted(catalog.profiles), first_ms, last_ms)

    pipeline = make_pipeline(settings, catalog)
    stop_sim = threading.Event()
    loop = asyncio.get_running_loop()

    def interrupt() -> None:
        print("\n  interrupted: stopping the simulators, then the pipeline (flush, acknowledge, exit)")
        stop_sim.set()

    loop.add_signal_handler(signal.SIGINT, interrupt)
    loop.add_signal_handler(signal.SIGTERM, interrupt)
    print(f"\nsimulating {expected.devices} devices: {expected.messages_sent} messages "
          f"({expected.expected_points} valid readings, {len(expected.faults)} injected faults) at {rate:g} msg/s")
    receivers = StandInReceivers(sites=frozenset(d.site for d in catalog.devices.values()))
    await receivers.start()
    run_task = asyncio.create_task(pipeline.run(), name="pipeline")
    try:
        return await _drive(settings, pipeline, run_task, sim, stop_sim, (first_ms, last_ms, before),
                            gateway, receivers)
    finally:
        stop_sim.set()
        pipeline.stop()
        await asyncio.gather(run_task, return_exceptions=True)
        await receivers.stop()


async def _drive(settings: Settings, pipeline: Pipeline, run_task: asyncio.Task[None], sim: DistrictSimulator,
                 stop_sim: threading.Event, window: tuple[int, int, Counter[str]],
                 gateway: tuple[str, str], receivers: StandInReceivers) -> int:
    """``window``: the run's first and last reading time, and the InfluxDB counts in it before the run."""
    first_ms, last_ms, before = window
    from simulators.district import MqttTarget, Progress, publish

    published = 0

    def on_progress(p: Progress) -> None:
        nonlocal published
        published = p.messages_sent

    await asyncio.sleep(0.5)  # let the pipeline subscribe before devices speak
    started = time.monotonic()
    sim_task = asyncio.create_task(asyncio.to_thread(
        publish, sim, MqttTarget.from_url(settings.mqtt.url, *gateway), stop=stop_sim, progress=on_progress,
        client_id=f"ct-demo-sim-{sim.seed}"), name="simulator")
    while not sim_task.done():
        await asyncio.wait({sim_task}, timeout=PROGRESS_EVERY_S)
        print(_progress_line(pipeline, published, started), flush=True)
        if run_task.done():
            stop_sim.set()
    summary = sim_task.result()
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    total = summary.messages_sent + summary.status_messages
    # Polling a counter the pipeline owns: simpler than an event per message.
    while pipeline.stats.messages_settled < total and time.monotonic() < deadline and not run_task.done():  # noqa: ASYNC110
        await asyncio.sleep(0.2)
    story_in_run = last_ms - first_ms >= STORY_END_S * 1000  # long enough for both incidents to end
    if receivers.runners and story_in_run and not stop_sim.is_set():
        print(f"  waiting up to {PAGES_TIMEOUT_S:.0f} s for Alertmanager's pages (the resolutions wait out the "
              "pager's 30 s group interval)", flush=True)
        deadline = time.monotonic() + PAGES_TIMEOUT_S
        while not receivers.story_told() and time.monotonic() < deadline and not run_task.done():  # noqa: ASYNC110
            await asyncio.sleep(0.5)
    pipeline.stop()
    await run_task
    print(_progress_line(pipeline, summary.messages_sent, started))
    after = await _count_points(settings, sorted(pipeline.catalog.profiles), first_ms, last_ms)
    _print_summary(pipeline, summary, before, after, settings)
    _print_pages(receivers)
    return 0


def _print_pages(receivers: StandInReceivers) -> None:
    if receivers.busy:
        print(f"\n  pager/chat ports {receivers.busy} are taken by another listener: the pages went there")
    if not receivers.runners:
        return
    print("\nwhat Alertmanager sent (deploy/alertmanager.yml: critical -> pager, warning -> chat, "
          "one group per incident):")
    print("\n".join(page_lines(receivers.pages())) or "  nothing (yet): the run was too short for the incidents")


def _print_summary(pipeline: Pipeline, summary: Summary, before: Counter[str], after: Counter[str],
                   settings: Settings) -> None:
    s = pipeline.stats
    per_system: Mapping[str, object] = summary.per_system
    print(f"\n  received {s.messages_received} messages = {summary.messages_sent} telemetry messages (of them "
          f"{len(summary.faults)} injected faults) + {summary.status_messages} status messages (birth / last will, "
          "no readings); a telemetry message carries one reading or a batch. 'landed' counts readings in InfluxDB "
          "as the pipeline saw them, 'in InfluxDB' what an InfluxQL count finds for the run's time window.")
    print("\n  system     sent readings   landed   in InfluxDB   rejections")
    for system in sorted(set(per_system) | set(s.readings_landed)):
        sent = getattr(per_system.get(system), "readings", 0)
        print(f"  {system:<9} {sent:>14} {s.readings_landed.get(system, 0):>8} {after[system] - before[system]:>13}"
              f" {s.rejections_by_system[system]:>12}")
    if s.rejections_by_system["unknown"]:
        print(f"  {'(unknown)':<9} {'':>14} {'':>8} {'':>13} {s.rejections_by_system['unknown']:>12}")
    print("\n  rejections by reason: " + (", ".join(f"{r} {n}" for r, n in sorted(s.rejections.items())) or "none"))
    db = settings.influx.database
    tls = f" --cafile {settings.mqtt.ca_file}" if settings.mqtt.ca_file else ""
    operator = "\"$(.venv/bin/citytelemetry security credential --operator | sed -n 's/^password=//p')\""
    print(f"""
where to look next (the services are still up; `citytelemetry services down` stops them):
  points     curl -G {settings.influx.url}/query --data-urlencode db={db} \\
               --data-urlencode 'q=SELECT last(*) FROM tunnel_multigas GROUP BY device SLIMIT 3'
  rejects    curl -G {settings.influx.url}/query --data-urlencode db={db} \\
               --data-urlencode 'q=SELECT reason, detail, topic FROM ct_rejects ORDER BY time DESC LIMIT 10'
  alerts     curl -G {settings.influx.url}/query --data-urlencode db={db} \\
               --data-urlencode 'q=SELECT state, summary FROM ct_alerts ORDER BY time DESC LIMIT 10'
  live feed  mosquitto_sub -h {settings.mqtt.host} -p {settings.mqtt.port}{tls} -u ct-operator -P {operator} \\
               -t '{settings.mqtt.topic_prefix}/deadletter/#' -v
  pipeline   .venv/bin/citytelemetry run   (metrics, health and alert pages at http://{settings.http.host}:{settings.http.port}/)
  contract   docs/device-contract.md      profiles  docs/profiles/README.md""")  # noqa: S608 - help text


def run_demo(settings: Settings, *, duration_s: float, rate: float, seed: int, bad: int,
             stop_services: bool) -> int:
    print("local services (run directory %s):" % settings.services.run_dir)  # noqa: UP031
    try:
        started = _start_services(settings)
    except ServiceError as exc:
        print(f"cannot start local services: {exc}")
        return 1
    try:
        apply_v1(settings.storage, settings.influx)  # the retention tiers: the pipeline keeps the rollups
    except RetentionError as exc:
        print(f"cannot create the retention tiers: {exc}")
        for service in reversed(started):
            service.stop()
        return 1
    # The local broker runs with credentials and ACLs written from the inventory: the pipeline logs in
    # with its own account; the simulator, one process speaking for 1,637 devices, as the site gateway
    # (paho needs a socket pair per connection, and select() stops at 1,024 descriptors).
    credentials = local_credentials(settings)
    settings = settings.model_copy(update={"mqtt": credentials.pipeline_mqtt(settings.mqtt)})
    if settings.http.port and not port_is_free(settings.http.port, urlsplit(f"http://{settings.http.host}").hostname
                                               or "127.0.0.1"):
        settings = settings.model_copy(update={"http": settings.http.model_copy(update={"port": 0})})
    try:
        return asyncio.run(_run(settings, duration_s, rate, seed, bad, credentials.gateway))
    finally:
        if not stop_services:
            print("\nservices left running: `citytelemetry services down` stops them")
        else:
            for service in reversed(started):
                service.stop()
            if started:
                print(f"\nstopped the services this demo started ({', '.join(s.name for s in started)}); "
                      "data stays in the run directory")


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = commands.add_parser("demo", help="start local services, simulators and the pipeline; print a summary")
    demo.add_argument("--duration", type=float, default=60.0, help="wall-clock seconds to run (default 60)")
    demo.add_argument("--rate", type=float, default=300.0, help="simulated messages per second (default 300)")
    demo.add_argument("--seed", type=int, default=1)
    demo.add_argument("--bad", type=int, default=24, help="malformed / out-of-range messages to inject")
    demo.add_argument("--stop-services", action="store_true",
                      help="stop the services this demo started (default: leave them up for the hints)")


def handle(args: argparse.Namespace, settings: Settings) -> int:
    return run_demo(settings, duration_s=args.duration, rate=args.rate, seed=args.seed, bad=args.bad,
                    stop_services=args.stop_services)
