"""The demo's incidents and the pages they send: a methane leak in compartment c002 with its fan off, and a
CHP engine fault, on top of normal operation; a stand-in pager and chat on the loopback ports that
deploy/alertmanager.yml sends to (19111 /pager, 19112 /chat), so the demo can show what went out.

Sim time runs faster than the wall clock in the demo (300 msg/s is about 4.4 x real time for the
district), so the incidents are short: they start 30 s and 60 s into the run and are over by 150 s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from citytelemetry.services import port_is_free

if TYPE_CHECKING:
    from simulators.scenarios import Scenario

PAGER_PORT, CHAT_PORT = 19111, 19112  # deploy/alertmanager.yml: the receivers' placeholder addresses
GAS, FAN, CHP = "tun-c002-gas1", "tun-c002-fan", "stn-chp1"
STORY_END_S = 150.0  # sim seconds: both incidents are over; the run must last longer to show resolutions


def demo_scenario() -> Scenario:
    from simulators.scenarios import Effect, Scenario, following, ramp, setting

    effects = (
        Effect(GAS, 30, 150, following("ch4", ramp((0, 1.0), (20, 26.0), (90, 26.0), (110, 0.4)), decimals=1)),
        Effect(FAN, 30, 150, setting(state="off", frequency=0.0, current=0.0)),
        Effect(CHP, 60, 140, setting(state="fault", p_el=0.0, q_heat=0.0, gas_flow=0.0, eta_el=0.0, rpm=0.0,
                                     nox=0.0, exhaust_temp=180.0, jacket_temp=70.0)),
    )
    return Scenario("demo", "methane leak in c002 with its fan off; CHP engine 1 faults", lambda _d: effects,
                    lambda _c: {GAS, FAN, CHP}, STORY_END_S)


@dataclass
class StandInReceivers:
    """What Alertmanager sent to the pager and the chat, kept for the summary."""

    sites: frozenset[str] = frozenset()  # the inventory's: other Alertmanagers on this machine may post here too
    received: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (receiver, alert)
    runners: list[web.AppRunner] = field(default_factory=list)
    busy: list[int] = field(default_factory=list)

    async def start(self) -> None:
        for name, port in (("pager", PAGER_PORT), ("chat", CHAT_PORT)):
            if not port_is_free(port):
                self.busy.append(port)  # someone else's relay: the pages go there instead
                continue
            app = web.Application()
            app.router.add_post(f"/{name}", self._receiver(name))
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            self.runners.append(runner)

    def _receiver(self, name: str) -> Any:
        async def receive(request: web.Request) -> web.Response:
            body = await request.json()
            self.received.extend((name, alert) for alert in body.get("alerts", []) if self._ours(alert))
            return web.Response()
        return receive

    def _ours(self, alert: dict[str, Any]) -> bool:
        labels = alert.get("labels", {})
        return "incident" in labels and labels.get("site") in self.sites

    async def stop(self) -> None:
        for runner in self.runners:
            await runner.cleanup()

    def pages(self, status: str | None = None) -> list[tuple[str, dict[str, Any]]]:
        return [(r, a) for r, a in self.received if status is None or a["status"] == status]

    def story_told(self) -> bool:
        """Both criticals paged and resolved."""
        names = {(a["labels"]["alertname"], a["status"]) for r, a in self.received if r == "pager"}
        wanted = {"tunnel_multigas_ch4_high", "chp_engine_state"}
        return all((n, s) in names for n in wanted for s in ("firing", "resolved"))


def page_lines(received: Sequence[tuple[str, dict[str, Any]]]) -> list[str]:
    lines = []
    for receiver, alert in received:
        labels, notes = alert["labels"], alert["annotations"]
        lines.append(f"  {receiver:<5} {alert['status']:<8} {labels['severity']:<8} {labels.get('incident', ''):<22} "
                     f"{notes.get('summary', labels['alertname'])}")
        if alert["status"] == "firing":
            page, runbook = alert.get("generatorURL", "-"), notes.get("runbook_url", "-")
            lines.append(f"        rule page {page}   runbook {runbook}")
    return lines
