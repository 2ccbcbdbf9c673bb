"""``/metrics`` (Prometheus text format) and ``/healthz`` (JSON; 503 when unhealthy) on aiohttp."""

from __future__ import annotations

import time

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from citytelemetry.observability.prometheus import registry_for
from citytelemetry.observability.stats import PipelineStats

WRITE_STALL_S = 60.0  # unhealthy when writes have failed for this long


def health(stats: PipelineStats) -> tuple[bool, dict[str, object]]:
    write = stats.write
    stalled = write.consecutive_failures > 0 and (
        time.monotonic() - write.last_success_monotonic > WRITE_STALL_S)
    spool_failing = stats.spool is not None and bool(stats.spool.last_error)
    healthy = stats.mqtt_connected and not stalled and not spool_failing
    return healthy, {
        "status": "ok" if healthy else "unhealthy",
        "mqtt_connected": stats.mqtt_connected,
        "write_failing": write.consecutive_failures > 0,
        "last_write_error": write.last_error if write.consecutive_failures else "",
        "buffered_lines": write.buffered_lines,
        "spool_error": stats.spool.last_error if stats.spool is not None else "",
        "spool_depth_records": stats.spool.depth_records if stats.spool is not None else 0,
        "in_flight_messages": stats.in_flight_messages,
    }


def make_app(stats: PipelineStats) -> web.Application:
    registry = registry_for(stats)

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        healthy, body = health(stats)
        return web.json_response(body, status=200 if healthy else 503)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    return app


async def start_http(stats: PipelineStats, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(make_app(stats), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
