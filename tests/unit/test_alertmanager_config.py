"""deploy/alertmanager.yml as shipped: group keys that separate incidents, the timings each receiver
was given (the integration tests shorten them), and the ``incident`` label on every alert subject."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from citytelemetry.alerts.compile import compile_rules
from citytelemetry.alerts.lifecycle import Tracker
from citytelemetry.alerts.rulefiles import load_rule_files
from citytelemetry.profiles import Catalog, load_catalog

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "deploy" / "alertmanager.yml").read_text(encoding="utf-8"))
    return loaded


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog(ROOT / "device_profiles" / "types", ROOT / "device_profiles" / "inventory")


def _route(config: dict[str, Any], receiver: str) -> dict[str, Any]:
    return next(r for r in config["route"]["routes"] if r["receiver"] == receiver)


def test_notifications_are_grouped_per_incident(config: dict[str, Any]) -> None:
    assert config["route"]["group_by"] == ["site", "incident"]
    assert all("group_by" not in r for r in config["route"]["routes"])  # every route inherits it


def test_each_receiver_has_its_own_timings(config: dict[str, Any]) -> None:
    pager, chat = _route(config, "pager"), _route(config, "chat")
    assert pager["matchers"] == ['severity="critical"']
    assert (pager["group_wait"], pager["group_interval"], pager["repeat_interval"]) == ("5s", "30s", "1h")
    assert chat["matchers"] == ['severity="warning"']
    assert (chat["group_wait"], chat["group_interval"], chat["repeat_interval"]) == ("30s", "5m", "4h")
    assert all(hook["send_resolved"] for r in config["receivers"] for hook in r["webhook_configs"])


def test_every_subject_names_its_incident(catalog: Catalog) -> None:
    ruleset = compile_rules(catalog, load_rule_files(ROOT / "alert_rules", catalog), Tracker(lambda _a: None))
    incident = {key: s.label("incident") for key, s in ruleset.subjects.items()}
    assert all(incident.values())
    assert incident["tun-c002-gas1"] == incident["tun-c002-gas2"] == incident["tun-c002-fan"] == \
        incident["hunnan/tunnel/cabin=power,compartment=c002"] == "compartment:power/c002"
    assert incident["tun-c003-gas1"] == "compartment:power/c003"
    assert incident["stn-chp1"] == "unit:chp1"
    assert incident["stn-chp2"] == "unit:chp2"
    assert incident["net-f01"] == incident["net-b001-em"] == "feeder:f01"  # a feeder and a meter it supplies
    assert incident["net-hes01"] == "node:hes01"
    assert incident["hunnan/network"] == "network:hunnan"
