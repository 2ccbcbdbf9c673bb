"""``/metrics`` (Prometheus text), ``/livez``, ``/readyz`` and ``/healthz`` (JSON) on aiohttp.

``/livez`` is 503 only when the process is stuck (restart it); ``/readyz`` is 503 while messages are not
being acknowledged; ``/healthz`` is ``/readyz`` under its old name (observability/health.py says when).
``POST /-/reload`` reloads profiles, inventory and alert rules (run/reload.py) and answers what changed;
it has no authentication, so it is taken from this host (loopback) only, even when the server listens on
every address (the container does, for the probes and /metrics); elsewhere, send the process SIGHUP.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from citytelemetry.observability.health import Condition, Health, HealthCheck
from citytelemetry.observability.prometheus import registry_for
from citytelemetry.observability.stats import PipelineStats

# (applied, report as JSON): the pipeline's reload, when it has one
Reload = Callable[[], Awaitable[tuple[bool, dict[str, object]]]]
Routes = Iterable[Callable[[web.Application], None]]  # more pages (alerts/page.py): each adds its routes
SAMPLE_EVERY_S = 1.0  # stall clocks need samples between probes, or work arriving just now looks old


def from_this_host(remote: str | None) -> bool:
    """Whether a peer address is loopback (IPv4, IPv6 or IPv4-mapped IPv6)."""
    try:
        address = ipaddress.ip_address(remote or "")
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


FOREIGN_RELOAD = {"applied": False, "problems": ["reload is taken from this host only (loopback); or send SIGHUP"]}


def reload_handler(reload: Reload | None) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def reload_now(request: web.Request) -> web.Response:
        if not from_this_host(request.remote):
            return web.json_response(FOREIGN_RELOAD, status=403)
        if reload is None:
            return web.json_response({"applied": False, "problems": ["this process cannot reload"]}, status=404)
        applied, report = await reload()
        return web.json_response(report, status=200 if applied else 422)

    return reload_now


class HealthCollector(Collector):
    def __init__(self, check: HealthCheck) -> None:
        self._check = check

    def collect(self) -> Iterator[Metric]:
        health = self._check.observe()
        yield GaugeMetricFamily("citytelemetry_live", "0 when the process is stuck (see /livez)",
                                value=int(health.live))
        yield GaugeMetricFamily("citytelemetry_ready", "0 while messages are not being acknowledged (see /readyz)",
                                value=int(health.ready))
        holding = health.conditions
        family = GaugeMetricFamily(
            "citytelemetry_health_condition", "1 while a condition holds: what holds acknowledgements back "
            "(messages then wait: citytelemetry_in_flight_messages), degrades, or stalls the pipeline",
            labels=["condition"])
        for condition in Condition:
            family.add_metric([condition.value], int(condition in holding))
        yield family


def _answer(health: Health, *, ok: bool) -> web.Response:
    return web.json_response(health.body(), status=200 if ok else 503)


def make_app(stats: PipelineStats, check: HealthCheck | None = None, *,
             reload: Reload | None = None, routes: Routes = ()) -> web.Application:
    check = check or HealthCheck(stats)
    registry = registry_for(stats)
    registry.register(HealthCollector(check))

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def livez(_: web.Request) -> web.Response:
        health = check.observe()
        return _answer(health, ok=health.live)

    async def readyz(_: web.Request) -> web.Response:
        health = check.observe()
        return _answer(health, ok=health.ready)

    async def sampler(_: web.Application) -> AsyncIterator[None]:
        async def sample() -> None:
            while True:
                check.observe()
                await asyncio.sleep(SAMPLE_EVERY_S)

        task = asyncio.create_task(sample(), name="health-sampler")
        yield
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    app = web.Application()
    app.cleanup_ctx.append(sampler)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/livez", livez)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/healthz", readyz)
    app.router.add_post("/-/reload", reload_handler(reload))
    for add_routes in routes:
        add_routes(app)
    return app


async def start_http(stats: PipelineStats, host: str, port: int, *, reload: Reload | None = None,
                     routes: Routes = ()) -> web.AppRunner:
    runner = web.AppRunner(make_app(stats, reload=reload, routes=routes), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
