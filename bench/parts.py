"""The measurements (a)-(f) of issue 6. Each returns table rows; none depends on another's state.

Consumers in (a), (c) and (d) drain a backlog: their persistent session is created first, the workload is
then published into the broker's queue for it, and the consumer is (re)started and timed until it has
everything. On a 2-core machine this keeps the publishers' CPU out of the consumer's figure (in the field
the devices are elsewhere); the publish rate into the broker is reported beside it.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from bench.codetree import CodeTree
from bench.cpu import CoreMeter, wait_quiet
from bench.pipeline import PipelineConfig, PipelineProcess
from bench.publish import PacedPlan, PublishResult, publish_bulk, publish_paced
from bench.results import BEFORE, Row
from bench.services import Services, count_points, create_database, influx_query, measurement_regex
from bench.subscribers import Job, mosquitto_sub_command
from bench.workload import DISTRICT_INVENTORY, DISTRICT_TYPES, Generated, PacedDevice, Workload, generate
from citytelemetry.compiled import PURE_PYTHON_ENV
from citytelemetry.services import free_port

SUBSCRIBER_NAMES = {"paho": "paho (MQTT 5)", "paho311": "paho (MQTT 3.1.1)"}

POLL_S = 0.5
FINE_POLL_S = 0.1


@dataclass(slots=True)
class Context:
    services: Services
    work_dir: Path
    run_id: str
    scale: float
    synthetic_dirs: tuple[Path, Path]  # (types, inventory) of the bench_sensor workload
    alerts: bool = True
    say: Callable[[str], None] = lambda text: print(text, file=sys.stderr, flush=True)
    generated: dict[str, tuple[Generated, Path]] = field(default_factory=dict)

    def settle(self) -> None:
        """Before a timed part: let the broker and the database finish what earlier parts gave them."""
        waited = wait_quiet(self.services.pids())
        if waited > 1.5:
            self.say(f"  (waited {waited:.1f} s for mosquitto and influxd to go quiet)")

    def prefix(self, name: str) -> str:
        return f"bench/{self.run_id}/{name}"

    def database(self, name: str) -> str:
        return f"bench_{self.run_id}_{name}"

    def workload(self, work: Workload) -> tuple[Generated, Path]:
        """The workload's messages, generated on first use and saved for the publisher processes."""
        if work.label not in self.generated:
            started = time.monotonic()
            gen = generate(work)
            path = gen.save(self.work_dir.parent / f"{work.label}.pickle")
            self.generated[work.label] = (gen, path)
            self.say(f"  {work.label}: generated {len(gen.messages)} messages, {gen.points} points, {gen.devices} "
                     f"devices of {gen.types} types in {time.monotonic() - started:.1f} s")
        return self.generated[work.label]

    def pipeline(self, name: str, database: str, prefix: str, *, mqtt_client: str = "mqtt5",
                 pure_python: bool = False, synthetic: bool = False, partition: str | None = None,
                 code: CodeTree | None = None) -> PipelineProcess:
        s = self.services
        types, inventory = self.synthetic_dirs if synthetic else (DISTRICT_TYPES, DISTRICT_INVENTORY)
        work_dir = self.work_dir
        if code is not None:  # its own profiles and rules; its defaults for what it lacks land in its own cwd
            types, inventory, work_dir = code.profiles_dir, code.inventory_dir, self.work_dir / f"before-{name}"
        return PipelineProcess(PipelineConfig(
            mqtt_url=s.mqtt_url, influx_url=s.influx_url, alertmanager_url=s.alertmanager.url, database=database,
            topic_prefix=prefix,
            client_id=f"bench-{self.run_id}-{name}", profiles_dir=types,
            inventory_dir=inventory, work_dir=work_dir, alerts=self.alerts,
            mqtt_client=mqtt_client, pure_python=pure_python, synthetic=synthetic, http_port=free_port(),
            partition=partition, code=code))


def _topic(prefix: str) -> str:
    return f"{prefix}/+/+/+/telemetry"


def _timeout(messages: int) -> float:
    return 60 + messages / 500  # generous: a stall, not a slow run, should end a part


# -- (a) the broker to bare subscribers -----------------------------------------------------------
def _subscriber(ctx: Context, client: str, job: Job) -> tuple[int, float]:
    if client == "mosquitto_sub":
        started = time.monotonic()
        done = subprocess.run(mosquitto_sub_command(job), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              timeout=job.timeout_s + 30, check=False)
        seconds = time.monotonic() - started
        if job.prepare:
            return 0, 0.0
        return (job.count if done.returncode == 0 else 0), seconds  # -C N: exit 0 only after N messages
    args = [sys.executable, "-m", "bench.subscribers", client, "prepare" if job.prepare else "drain",
            "--host", job.host, "--port", str(job.port), "--topic", job.topic, "--client-id", job.client_id,
            "--count", str(job.count), "--timeout", str(job.timeout_s)]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=job.timeout_s + 30, check=False)
    if proc.returncode != 0:
        ctx.say(f"  {client} subscriber failed: {proc.stderr[-800:]}")
        return 0, 0.0
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return int(result["received"]), float(result["seconds"])


def part_a(ctx: Context, work: Workload, clients: list[str]) -> list[Row]:
    rows = []
    s = ctx.services
    gen, path = ctx.workload(work)
    count = len(gen.messages)
    for client in clients:
        prefix = ctx.prefix(f"a-{work.name}-{client}")
        job = Job(s.mqtt_host, s.mqtt_port, _topic(prefix), f"bench-{ctx.run_id}-a-{work.name}-{client}",
                  count, _timeout(count), prepare=True)
        _subscriber(ctx, client, job)
        published = publish_bulk(s.mqtt_host, s.mqtt_port, path, prefix)
        job.prepare = False
        received, seconds = _subscriber(ctx, client, job)
        rate = received / seconds if seconds else 0.0
        ctx.say(f"  (a) {work.name} {client}: {received}/{count} in {seconds:.2f} s; "
                f"published at {published.rate:,.0f} msg/s")
        rows.append(Row("a", work.name, f"{SUBSCRIBER_NAMES.get(client, client)} bare subscriber (drain backlog)",
                        rate, rate * gen.points / count,
                        f"received {received}/{count} in {seconds:.1f} s; "
                        f"backlog published at {published.rate:,.0f} msg/s",
                        {"received": received, "expected": count}))
    return rows


# -- (b) raw InfluxDB --------------------------------------------------------------------------------
def pipeline_lines(ctx: Context, gen: Generated) -> list[bytes]:
    """The exact lines the pipeline writes for this workload: the real validator and line protocol."""
    from citytelemetry.contracts import InboundMessage
    from citytelemetry.profiles import load_catalog
    from citytelemetry.sink.line_protocol import reading_line
    from citytelemetry.testing import CountingDelivery
    from citytelemetry.validate import Limits, MessageValidator

    types, inventory = ctx.synthetic_dirs if gen.work.synthetic else (DISTRICT_TYPES, DISTRICT_INVENTORY)
    prefix = ctx.prefix(f"b-{gen.work.label}")
    validator = MessageValidator(load_catalog(types, inventory), Limits(), topic_prefix=prefix)
    lines: list[bytes] = []
    for topic, body in gen.share(prefix, 0, 1):
        outcome = validator(InboundMessage(topic, body, 0, CountingDelivery()))
        lines.extend(reading_line(r) for r in outcome.readings)
    return lines


def _write_batches(url: str, db: str, bodies: list[bytes], errors: list[str]) -> None:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 8086, timeout=60)
    try:
        for body in bodies:
            conn.request("POST", f"/write?db={db}&precision=ns", body=body)
            response = conn.getresponse()
            text = response.read()
            if response.status != 204:
                errors.append(f"{response.status} {text[:200]!r}")
                return
    finally:
        conn.close()


def part_b(ctx: Context, work: Workload, *, batch: int = 5000) -> list[Row]:
    gen, _ = ctx.workload(work)
    lines = pipeline_lines(ctx, gen)
    bodies = [b"\n".join(lines[i:i + batch]) for i in range(0, len(lines), batch)]
    rows = []
    for writers in (1, 2):
        db = ctx.database(f"b{writers}_{work.name.lower()}")
        create_database(ctx.services.influx_url, db)
        errors: list[str] = []
        threads = [threading.Thread(target=_write_batches, args=(ctx.services.influx_url, db, bodies[k::writers],
                                                                 errors)) for k in range(writers)]
        ctx.settle()
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = time.monotonic() - started
        landed = count_points(ctx.services.influx_url, db, gen.measurements)
        rate = landed / seconds
        ctx.say(f"  (b) {work.name} {writers} writer(s): {landed}/{len(lines)} points in {seconds:.2f} s {errors[:1]}")
        rows.append(Row("b", work.name, f"raw InfluxDB /write, {writers} writer{'s' if writers > 1 else ''}",
                        None, rate, f"{landed}/{len(lines)} points in {seconds:.1f} s, batches of {batch}"
                        + (f"; errors: {errors[0]}" if errors else ""),
                        {"landed": landed, "expected": len(lines)}))
    return rows


# -- (c), (d) the pipeline ------------------------------------------------------------------------------
@dataclass(slots=True)
class Landed:
    count: int
    done_at: float  # monotonic time of the poll that saw the final count
    first_at: float  # monotonic time of the first poll that saw more than the first poll did


def wait_landed(url: str, db: str, measurements: Sequence[str], expected: int, *, timeout_s: float,
                stall_s: float = 60.0, poll_s: float = POLL_S) -> Landed:
    """Poll an InfluxQL count until ``expected`` points are there, nothing lands for ``stall_s``, or timeout.

    Every ``poll_s`` until half has landed, then every ``FINE_POLL_S``: a count query costs influxd CPU
    that the pipeline being measured competes for, but the end of a 2-second drain needs a finer clock
    than 0.5 s (the drain is timed to the poll that first sees the last point)."""
    deadline = time.monotonic() + timeout_s
    last, last_change = -1, time.monotonic()
    initial, first_at = None, None
    while True:
        now = time.monotonic()
        count = count_points(url, db, measurements)
        initial = count if initial is None else initial
        if first_at is None and count > initial:
            first_at = now
        if count != last:
            last, last_change = count, now
        if count >= expected or now > deadline or now - last_change > stall_s:
            return Landed(count, now, first_at if first_at is not None else now)
        time.sleep(min(poll_s, FINE_POLL_S) if count >= expected / 2 else poll_s)


WRITTEN_POLL_S = 0.1  # /metrics of the pipeline being timed: a scrape costs it 0.65 ms of CPU (W2 district)
NO_METRICS_S = 5.0  # no answer from every pipeline's /metrics for this long: time by InfluxQL counts instead


def wait_written(url: str, db: str, measurements: Sequence[str], expected: int, procs: Sequence[PipelineProcess], *,
                 timeout_s: float) -> Landed:
    """Until the pipelines say InfluxDB acknowledged ``expected`` points, timed as (b) times raw InfluxDB:
    to the last acknowledged write (``citytelemetry_last_write_timestamp_seconds``), then checked by one
    InfluxQL count. Counting every 0.1 s instead took influxd 30-200 ms a query, in the middle of the drain
    being timed (its log, W2). Should the count fall short (the pipelines' own points, self-metrics or
    rollups, counted in theirs), the count is polled as before and the drain is timed by that poll."""
    deadline = time.monotonic() + timeout_s
    answered = time.monotonic()
    while True:
        figures = [p.metrics() for p in procs]
        seen_at = time.monotonic()
        if all("citytelemetry_points_written_total" in m for m in figures):  # every pipeline answered
            answered = seen_at
            if sum(m["citytelemetry_points_written_total"] for m in figures) >= expected:
                break
        elif seen_at - answered > NO_METRICS_S:  # a pipeline without /metrics (or it stopped answering)
            return wait_landed(url, db, measurements, expected, timeout_s=max(1.0, deadline - seen_at))
        if time.monotonic() > deadline:
            return wait_landed(url, db, measurements, expected, timeout_s=1.0)
        time.sleep(WRITTEN_POLL_S)
    count = count_points(url, db, measurements)
    if count < expected:
        return wait_landed(url, db, measurements, expected, timeout_s=max(1.0, deadline - time.monotonic()))
    last_write = max(m.get("citytelemetry_last_write_timestamp_seconds", 0.0) for m in figures)
    # An older ref's code (--baseline) has no such gauge: timed by the scrape that saw its points written.
    done_at = last_write + (time.monotonic() - time.time()) if last_write else seen_at
    return Landed(count, done_at, done_at)


def _rejected(url: str, db: str) -> int:
    try:
        series = influx_query(url, db, "SELECT count(reason) FROM ct_rejects")
    except RuntimeError:
        return 0
    return int(series[0]["values"][0][1]) if series else 0


def alert_events(url: str, db: str) -> dict[str, int]:
    """Firing events written to ``ct_alerts`` during the part, by alert name."""
    try:
        series = influx_query(url, db, "SELECT count(fingerprint) FROM ct_alerts WHERE \"state\" = 'firing' "
                                       "GROUP BY alertname")
    except RuntimeError:
        return {}
    return {s["tags"]["alertname"]: int(s["values"][0][1]) for s in series}


def _first_ready(procs: list[PipelineProcess], timeout_s: float = 60.0) -> float:
    """When the first pipeline subscribed: the drain starts then, not when the last one did (a rate
    timed from the last would leave out what the first drained meanwhile)."""
    deadline = time.monotonic() + timeout_s
    while True:
        ready = [p.poll_ready() for p in procs]  # every one polled, so each notes the time it subscribed
        if any(ready):
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"no citytelemetry run subscribed within {timeout_s} s")
        time.sleep(0.02)
    return min(p.ready_at for p in procs if p.ready_at)


@dataclass(slots=True)
class GcFigures:
    """From /metrics at the end of the drain: every generation's collections and longest pause."""

    collections: list[int]
    longest_ms: float
    total_ms: float

    @classmethod
    def scrape(cls, procs: list[PipelineProcess]) -> GcFigures:
        collections, longest, total = [0, 0, 0], 0.0, 0.0
        for p in procs:
            m = p.metrics()
            for g in range(3):
                collections[g] += int(m.get(f'citytelemetry_gc_collections_total{{generation="{g}"}}', 0))
                longest = max(longest, m.get(f'citytelemetry_gc_longest_pause_seconds{{generation="{g}"}}', 0.0))
                total += m.get(f'citytelemetry_gc_pause_seconds_total{{generation="{g}"}}', 0.0)
        return cls(collections, longest * 1000, total * 1000)

    def text(self) -> str:
        c = self.collections
        return (f"GC {c[0]}/{c[1]}/{c[2]} collections (gen 0/1/2), longest pause {self.longest_ms:.0f} ms, "
                f"{self.total_ms:.0f} ms in all")


def _drain_pipelines(ctx: Context, work: Workload, name: str, procs: list[PipelineProcess], db: str,
                     prefix: str, *, before_stop: Callable[[], None] | None = None) -> tuple[Row, PublishResult]:
    """Sessions first, then the backlog, then the timed drain; ``before_stop`` runs once everything landed,
    while the processes still run (to scrape what else their /metrics say)."""
    gen, path = ctx.workload(work)
    try:  # create the persistent sessions (and the database), then leave
        for p in procs:
            p.start()
        for p in procs:
            p.wait_ready()
    finally:
        for p in procs:
            p.stop()
    s = ctx.services
    published = publish_bulk(s.mqtt_host, s.mqtt_port, path, prefix)
    ctx.settle()
    try:
        for p in procs:
            p.start()
        started = _first_ready(procs)
        meter = CoreMeter({**{f"pipeline {k}": p.pid for k, p in enumerate(procs, 1)}, **s.pids()})
        for p in procs:
            p.wait_ready()
        landed = wait_written(s.influx_url, db, gen.measurements, gen.points, procs,
                              timeout_s=_timeout(len(gen.messages)))
        cores = meter.stop()
        total_cpu = sum(p.cpu_seconds() for p in procs)
        startup_cpu = sum(p.cpu_at_ready for p in procs)
        cpu = total_cpu - startup_cpu
        rss = max(p.peak_rss_mib() for p in procs)
        gc_figures = GcFigures.scrape(procs)
        if before_stop is not None:
            before_stop()
    finally:
        codes = [p.stop() for p in procs]
    seconds = landed.done_at - started
    rejected = _rejected(s.influx_url, db)
    alerts = alert_events(s.influx_url, db)
    lost = gen.points - landed.count - rejected
    rate = landed.count / seconds if seconds > 0 else 0.0
    cpu_per_100k = cpu / landed.count * 100_000 if landed.count else 0.0
    alert_text = ", ".join(f"{k} {v}" for k, v in sorted(alerts.items())) or "none"
    ctx.say(f"  ({name}) {work.label}: {landed.count}/{gen.points} points in {seconds:.1f} s, rejected {rejected}, "
            f"lost {lost}, CPU {cpu:.1f} s, peak RSS {rss:.0f} MiB, {gc_figures.text()}, alerts fired: {alert_text}, "
            f"exit {codes}")
    row = Row(name, work.name, "", rate * len(gen.messages) / gen.points, rate,
              f"landed {landed.count}/{gen.points} (InfluxQL count), rejected {rejected}, lost {lost}; "
              f"CPU while draining {cpu_per_100k:.1f} s/100k points ({cpu_per_100k * 10:.1f} µs per point; start-up "
              f"{startup_cpu:.1f} s more); peak RSS {rss:.0f} MiB; "
              f"{gc_figures.text()}; alerts fired during the drain: {alert_text}; backlog published at "
              f"{published.rate:,.0f} msg/s; {cores.text()}",
              {"landed": landed.count, "expected": gen.points, "messages": len(gen.messages), "rejected": rejected,
               "lost": lost,
               "cpu_s_per_100k": cpu_per_100k, "startup_cpu_s": startup_cpu, "peak_rss_mib": rss, "seconds": seconds,
               "cores": cores.by_name, "machine_cores": cores.machine, "gc_longest_ms": gc_figures.longest_ms,
               "gc_full_collections": gc_figures.collections[2], "alerts": dict(alerts)})
    return row, published


def part_c(ctx: Context, work: Workload, mqtt_client: str = "mqtt5", *, pure_python: bool = False,
           code: CodeTree | None = None) -> Row:
    """``mqtt_client``: the default source (``mqtt5``) or ``aiomqtt``; ``pure_python``: the hot path's sources
    instead of its compiled modules; ``work.synthetic``: the bench_sensor workload; ``code``: the pipeline of
    another git ref (``--baseline``, pure Python). Each variant is measured side by side with the default."""
    pure_python = pure_python or code is not None
    name = f"c-{work.label}-{mqtt_client}" + ("-pure" if pure_python else "") + ("-before" if code else "")
    db, prefix = ctx.database(name.replace("-", "_").lower()), ctx.prefix(name)
    proc = ctx.pipeline(name, db, prefix, mqtt_client=mqtt_client, pure_python=pure_python,
                        synthetic=work.synthetic, code=code)
    row, _ = _drain_pipelines(ctx, work, "c", [proc], db, prefix)
    row.what = ("citytelemetry run, 1 process (drain backlog)"
                + ("" if mqtt_client == "mqtt5" else f", mqtt.client = {mqtt_client}")
                + (f", pure Python ({PURE_PYTHON_ENV}=1)" if pure_python else "")
                + (", synthetic bench_sensor workload (5 floats, generic rules)" if work.synthetic else ""))
    if code is not None:
        left_out = proc.config.left_out()
        row.what += f", {BEFORE} {code.label} (its src, profiles and rules)"
        row.details += ("; settings it does not know, left at its defaults: " + ", ".join(left_out)
                        if left_out else "")
    return row


def member_messages(procs: list[PipelineProcess]) -> dict[str, float]:
    """Messages each member received, from its /metrics (the partition's balance on this workload)."""
    return {f"member {k}": p.metrics().get("citytelemetry_messages_received_total", 0.0)
            for k, p in enumerate(procs, 1)}


def part_d(ctx: Context, work: Workload, members: int = 3) -> Row:
    """``members`` partitioned members (``pipeline.partition`` 1/n … n/n): each subscribes to its own devices'
    topics, with its own client id, spool, checkpoint, alert state and dead letters (``ctx.pipeline``)."""
    db, prefix = ctx.database(f"d_{work.name.lower()}"), ctx.prefix(f"d-{work.name}")
    procs = [ctx.pipeline(f"d{k}-{work.name}", db, prefix, partition=f"{k}/{members}")
             for k in range(1, members + 1)]
    received: dict[str, float] = {}
    row, _ = _drain_pipelines(ctx, work, "d", procs, db, prefix,
                              before_stop=lambda: received.update(member_messages(procs)))
    n = members
    row.what = f"citytelemetry run, {n} partitioned members (pipeline.partition 1/{n} … {n}/{n})"
    row.details += "; messages received per member " + " / ".join(f"{n:,.0f}" for n in received.values())
    row.figures["member_messages"] = received
    return row


# -- (e) latency -------------------------------------------------------------------------------------------
class _LatencyProbe:
    """Polls per-bucket counts of the points and notes when each bucket grows.

    A bucket spans 100 ms of the publishers' schedule: ``accel`` x 100 ms of device time. A point's
    latency is when its bucket grew minus when the middle of the bucket was due (``PacedPlan.due``), so
    a publisher running late counts against the pipeline, never for it. Only the last ``WINDOW_S`` of
    the schedule are queried: counting everything since the start made each poll scan the whole run,
    so the probe itself loaded influxd more and more. A point that lands later than the window is not
    sampled; ``sampled`` says how many were.
    """

    BUCKET_WALL_MS = 100
    WINDOW_S = 10.0

    def __init__(self, url: str, db: str, plan: PacedPlan, measurements: Sequence[str], poll_s: float = 0.1) -> None:
        self.url, self.db, self.plan, self.poll_s = url, db, plan, poll_s
        self.measurements = measurements
        self.bucket_ms = max(1, round(plan.accel * self.BUCKET_WALL_MS))
        self.seen: dict[int, int] = {}
        self.samples: list[tuple[float, int]] = []  # (latency ms, points)
        self.stop = threading.Event()
        self._last_poll = time.time()
        # A query influxd answers late delays the probe as much as a late write: the slowest one tells
        # a database stall from a pipeline stall when the p99 is high.
        self.slowest_query_ms = 0.0

    def poll(self) -> None:
        plan = self.plan
        if not plan.wall0:
            return
        lower = max(plan.start_ms, int(plan.start_ms + (time.time() - self.WINDOW_S - plan.wall0) * plan.accel * 1000))
        lower -= lower % self.bucket_ms  # whole buckets only
        q = (f"SELECT count(seq) FROM {measurement_regex(self.measurements)} WHERE time >= {lower}ms "  # noqa: S608
             f"GROUP BY time({self.bucket_ms}ms) fill(none)")
        asked = time.time()
        try:
            series = influx_query(self.url, self.db, q)
        except RuntimeError:
            return
        now = time.time()
        self.slowest_query_ms = max(self.slowest_query_ms, (now - asked) * 1000)
        seen_at = (self._last_poll + now) / 2  # landed somewhere between the two polls
        counts: dict[int, int] = {}
        for one in series:
            for bucket_ms, count in one["values"]:
                counts[bucket_ms] = counts.get(bucket_ms, 0) + int(count)
        for bucket_ms, count in counts.items():
            grown = count - self.seen.get(bucket_ms, 0)
            if grown > 0:
                self.seen[bucket_ms] = count
                self.samples.append(((seen_at - plan.due(bucket_ms + self.bucket_ms / 2)) * 1000, grown))
        self._last_poll = now

    def run(self) -> None:
        while not self.stop.is_set():
            self.poll()
            self.stop.wait(self.poll_s)

    @property
    def sampled(self) -> int:
        return sum(n for _, n in self.samples)

    def percentile(self, q: float) -> float:
        ordered = sorted(self.samples)
        total = sum(n for _, n in ordered)
        rank, acc = q * total, 0
        for latency, n in ordered:
            acc += n
            if acc >= rank:
                return latency
        return float("nan")


def part_e(ctx: Context, devices: list[PacedDevice], rates: list[float], duration_s: float) -> list[Row]:
    rows = []
    s = ctx.services
    measurements = paced_measurements(devices)
    for rate in rates:
        name = f"e{int(rate)}"
        db, prefix = ctx.database(name), ctx.prefix(name)
        plan = PacedPlan(devices, rate, duration_s)
        ctx.settle()
        with ctx.pipeline(name, db, prefix) as proc:
            proc.wait_ready()
            probe = _LatencyProbe(s.influx_url, db, plan, measurements)
            poller = threading.Thread(target=probe.run, daemon=True)
            poller.start()
            published = publish_paced(s.mqtt_host, s.mqtt_port, plan, prefix)
            landed = wait_landed(s.influx_url, db, measurements, published.messages, timeout_s=60 + duration_s,
                                 poll_s=0.2)
            time.sleep(0.3)
            probe.stop.set()
            poller.join()
            probe.poll()
            gc_figures = GcFigures.scrape([proc])
            rss = proc.peak_rss_mib()
        alerts = alert_events(s.influx_url, db)
        alert_text = ", ".join(f"{k} {v}" for k, v in sorted(alerts.items())) or "none"
        p50, p99 = probe.percentile(0.5), probe.percentile(0.99)
        ctx.say(f"  (e) {rate:g} msg/s: published {published.messages} at {published.rate:,.0f} msg/s, landed "
                f"{landed.count}; latency p50 {p50:.0f} ms, p99 {p99:.0f} ms; {gc_figures.text()}")
        rows.append(Row("e", "W1", f"latency publish→queryable at {rate:g} msg/s", published.rate, published.rate,
                        f"p50 {p50:,.0f} ms, p99 {p99:,.0f} ms (±{_LatencyProbe.BUCKET_WALL_MS} ms, {probe.sampled} "
                        f"points timed, slowest probe query {probe.slowest_query_ms:,.0f} ms); landed "
                        f"{landed.count}/{published.messages} over {duration_s:g} s; device time x{plan.accel:.0f}; "
                        f"peak RSS {rss:.0f} MiB; {gc_figures.text()}; alerts fired: {alert_text}",
                        {"p50_ms": p50, "p99_ms": p99, "landed": landed.count, "expected": published.messages,
                         "sampled": probe.sampled, "gc_longest_ms": gc_figures.longest_ms, "peak_rss_mib": rss}))
    return rows


def paced_measurements(devices: list[PacedDevice]) -> tuple[str, ...]:
    from bench.workload import district_catalog

    catalog = district_catalog()
    return tuple(sorted({catalog.devices[d.device_id].profile.type for d in devices}))


DRAIN_POLL_S = 0.25


# -- (f) drain after an InfluxDB outage -----------------------------------------------------------------------
def part_f(ctx: Context, devices: list[PacedDevice], rate: float, warmup_s: float, outage_s: float) -> Row:
    s = ctx.services
    db, prefix = ctx.database("f"), ctx.prefix("f")
    measurements = paced_measurements(devices)
    result: list[PublishResult] = []
    plan = PacedPlan(devices, rate, warmup_s + outage_s)
    ctx.settle()
    with ctx.pipeline("f", db, prefix) as proc:
        proc.wait_ready()
        publisher = threading.Thread(target=lambda: result.append(publish_paced(
            s.mqtt_host, s.mqtt_port, plan, prefix)), daemon=True)
        publisher.start()
        time.sleep(warmup_s)
        before = count_points(s.influx_url, db, measurements)
        s.influx.stop()
        stopped = time.monotonic()
        ctx.say(f"  (f) InfluxDB stopped with {before} points landed; outage {outage_s:g} s under {rate:g} msg/s")
        time.sleep(outage_s)
        publisher.join()  # the load ends with the outage, so what follows is the backlog alone
        s.influx.start()
        ready = time.monotonic()
        outage_s = ready - stopped
        published = result[0].messages
        backlog = published - before
        landed = wait_landed(s.influx_url, db, measurements, published, timeout_s=120 + backlog / 200,
                             poll_s=DRAIN_POLL_S)
    resumed_s = landed.first_at - ready  # the writer's retry backoff (capped, jittered) runs on after influxd is back
    # A small backlog can land between two polls: the poll interval is then the resolution (a lower bound).
    seconds = max(landed.done_at - landed.first_at, DRAIN_POLL_S)
    drained = landed.count - before
    drain_rate = drained / seconds if seconds > 0 else 0.0
    ctx.say(f"  (f) backlog {backlog} points: first write {resumed_s:.1f} s after influxd was ready, then drained in "
            f"{seconds:.1f} s: {drain_rate:,.0f} points/s, {drain_rate / rate:.1f}x the nominal {rate:g}/s; "
            f"landed {landed.count}/{published}")
    return Row("f", "W1", f"drain after a {outage_s:.0f} s InfluxDB outage", drain_rate, drain_rate,
               f"nominal {rate:g} msg/s; backlog {backlog} points; first write {resumed_s:.1f} s after influxd was "
               f"ready (retry backoff), then drained in {seconds:.1f} s = {drain_rate / rate:.1f}x nominal; "
               f"landed {landed.count}/{published}",
               {"landed": landed.count, "expected": published, "drain_ratio": drain_rate / rate,
                "resumed_s": resumed_s})


# -- (g) memory over a long run at a fixed rate ---------------------------------------------------------------
def part_g(ctx: Context, devices: list[PacedDevice], rate: float, duration_s: float) -> Row:
    """RSS sampled every ``duration_s / 60`` s while ``rate`` msg/s flow for ``duration_s``: the peak, and
    the growth from the end of the first quarter (warm-up: caches, buffers) to the end."""
    s = ctx.services
    db, prefix = ctx.database("g"), ctx.prefix("g")
    samples: list[tuple[float, float]] = []
    ctx.settle()
    stop = threading.Event()
    with ctx.pipeline("g", db, prefix) as proc:
        proc.wait_ready()
        started = time.monotonic()

        def sample() -> None:
            while True:
                samples.append((time.monotonic() - started, proc.rss_mib()))
                if stop.wait(max(0.2, duration_s / 60)):
                    return

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        published = publish_paced(s.mqtt_host, s.mqtt_port, PacedPlan(devices, rate, duration_s), prefix)
        stop.set()
        sampler.join()
        landed = wait_landed(s.influx_url, db, paced_measurements(devices), published.messages,
                             timeout_s=60 + duration_s, poll_s=0.25)
        peak = proc.peak_rss_mib()
        gc_figures = GcFigures.scrape([proc])
    warm = next((rss for t, rss in samples if t >= duration_s / 4), samples[-1][1])
    end = samples[-1][1]
    growth_per_min = (end - warm) / (duration_s * 0.75 / 60)
    ctx.say(f"  (g) {published.messages} messages at {published.rate:,.0f} msg/s over {duration_s:g} s: RSS "
            f"{warm:.0f} MiB after warm-up, {end:.0f} MiB at the end, peak {peak:.0f} MiB; landed {landed.count}")
    return Row("g", "W1", f"memory over {duration_s / 60:.1f} min at {rate:g} msg/s", published.rate, published.rate,
               f"RSS {warm:.0f} MiB after the first quarter, {end:.0f} MiB at the end ({growth_per_min:+.1f} MiB/min), "
               f"peak {peak:.0f} MiB; {len(samples)} samples; landed {landed.count}/{published.messages}; "
               f"{gc_figures.text()}",
               {"landed": landed.count, "expected": published.messages, "peak_rss_mib": peak,
                "rss_warm_mib": warm, "rss_end_mib": end, "rss_growth_mib_per_min": growth_per_min,
                "gc_longest_ms": gc_figures.longest_ms})
