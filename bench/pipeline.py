"""``citytelemetry run`` as a subprocess: configured through CITYTELEMETRY_* variables, measured through /proc
and its own /metrics.

Shipped defaults except what a private run needs: its broker, database, topic prefix, client id, profile
directories, its spool and alert state in the run directory, and a free port for /metrics (on, as shipped).
The district runs with the shipped ``alert_rules/``; the synthetic type with the generic rules only
(``site.yaml``: it has no district rules to match)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from bench.codetree import CodeTree
from bench.cpu import process_cpu_seconds
from citytelemetry.compiled import PURE_PYTHON_ENV

READY_MARK = "subscribed to"


SHIPPED_RULES = Path(__file__).resolve().parents[1] / "alert_rules"


def bench_rules_dir(work_dir: Path) -> Path:
    """The synthetic devices have no district types: keep the generic rules (freshness, coverage,
    completeness) besides the threshold rules generated from the bench profile."""
    rules = work_dir / "alert_rules_synthetic"
    rules.mkdir(parents=True, exist_ok=True)
    shutil.copy(Path(__file__).resolve().parents[1] / "alert_rules" / "site.yaml", rules / "site.yaml")
    return rules


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    mqtt_url: str
    influx_url: str
    alertmanager_url: str
    database: str
    topic_prefix: str
    client_id: str
    profiles_dir: Path
    inventory_dir: Path
    work_dir: Path  # cwd of the process (no citytelemetry.toml there) and home of its alert state
    alerts: bool = True
    mqtt_client: str = "mqtt5"  # mqtt.client: the default source, or "aiomqtt"
    pure_python: bool = False  # import the hot path's sources even where they are compiled
    synthetic: bool = False  # the bench_sensor profiles: generic alert rules only
    http_port: int = 0  # /metrics and /healthz (0: off)
    partition: str | None = None  # pipeline.partition "k/n": a partitioned member
    code: CodeTree | None = None  # the pipeline of another git ref (--baseline); None: this tree's

    @property
    def rules_dir(self) -> Path:
        if self.code is not None:
            return self.code.rules_dir
        return bench_rules_dir(self.work_dir) if self.synthetic else SHIPPED_RULES

    def env(self) -> dict[str, str]:
        """The process's environment; for another ref's code only the settings it knows (``left_out``)."""
        env = self._env()
        return env if self.code is None else self.code.env(env)[0]

    def left_out(self) -> list[str]:
        """Settings this run passes that the other ref's code does not know (its default applies)."""
        return [] if self.code is None else self.code.env(self._env())[1]

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CITYTELEMETRY_")}
        env.update({
            "CITYTELEMETRY_MQTT__URL": self.mqtt_url,
            "CITYTELEMETRY_MQTT__CLIENT_ID": self.client_id,
            "CITYTELEMETRY_MQTT__CLIENT": self.mqtt_client,
            "CITYTELEMETRY_MQTT__TOPIC_PREFIX": self.topic_prefix,
            "CITYTELEMETRY_INFLUX__URL": self.influx_url,
            "CITYTELEMETRY_ALERTMANAGER__URL": self.alertmanager_url,
            "CITYTELEMETRY_INFLUX__DATABASE": self.database,
            "CITYTELEMETRY_HTTP__PORT": str(self.http_port),
            "CITYTELEMETRY_HTTP__HOST": "127.0.0.1",
            "CITYTELEMETRY_PIPELINE__PROFILES_DIR": str(self.profiles_dir),
            "CITYTELEMETRY_PIPELINE__INVENTORY_DIR": str(self.inventory_dir),
            "CITYTELEMETRY_ALERTS__ENABLED": "true" if self.alerts else "false",
            "CITYTELEMETRY_ALERTS__STATE_FILE": str(self.work_dir / f"alert-state-{self.client_id}.json"),
            "CITYTELEMETRY_ALERTS__RULES_DIR": str(self.rules_dir),
            # Every file of per-instance state is this process's own: the parts reuse the same devices, and
            # a shared sequence checkpoint made a later part's readings duplicates of an earlier part's.
            "CITYTELEMETRY_PIPELINE__SPOOL_DIR": str(self.work_dir / f"spool-{self.client_id}"),
            "CITYTELEMETRY_PIPELINE__CHECKPOINT_FILE": str(self.work_dir / f"device-state-{self.client_id}.ckpt"),
            "CITYTELEMETRY_PIPELINE__DEADLETTER_DIR": str(self.work_dir / f"deadletters-{self.client_id}"),
            "CITYTELEMETRY_STORAGE__CHECKPOINT_FILE": str(self.work_dir / f"rollup-windows-{self.client_id}.json"),
        })
        if self.partition:
            env["CITYTELEMETRY_PIPELINE__PARTITION"] = self.partition
        if self.pure_python:
            env[PURE_PYTHON_ENV] = "1"
        return env


def command() -> list[str]:
    script = Path(sys.executable).with_name("citytelemetry")
    return [str(script), "run"] if script.exists() else [sys.executable, "-m", "citytelemetry", "run"]


class PipelineProcess:
    """One ``citytelemetry run``; its log goes to ``<work_dir>/<client_id>.log``."""

    def __init__(self, config: PipelineConfig) -> None:
        self.config = config
        self.log_path = config.work_dir / f"{config.client_id}.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0
        self.started_at = 0.0
        self.ready_at = 0.0
        self.cpu_at_ready = 0.0

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("not started")
        return self._proc.pid

    def start(self) -> None:
        self.config.work_dir.mkdir(parents=True, exist_ok=True)
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.started_at = time.monotonic()
            self.ready_at = 0.0
            argv = command() if self.config.code is None else self.config.code.command()
            self._proc = subprocess.Popen(argv, env=self.config.env(), cwd=self.config.work_dir,
                                          stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout_s: float = 60.0) -> float:
        """Wait for the 'subscribed' log line; returns the monotonic time it was first seen."""
        deadline = time.monotonic() + timeout_s
        while not self.poll_ready():
            if time.monotonic() > deadline:
                raise RuntimeError(f"citytelemetry run not subscribed after {timeout_s} s:\n{self.log_tail()[-3000:]}")
            time.sleep(0.02)
        return self.ready_at

    def poll_ready(self) -> bool:
        """Has it subscribed (consuming from then on)? Notes the time it was first seen."""
        if self.ready_at:
            return True
        if READY_MARK in self.log_tail():
            self.ready_at = time.monotonic()
            self.cpu_at_ready = self.cpu_seconds()  # start-up: catalog, rules, connect
            return True
        if self._proc is not None and self._proc.poll() is not None:
            raise RuntimeError(f"citytelemetry run exited with {self._proc.returncode}:\n{self.log_tail()[-3000:]}")
        return False

    def gc_summary(self) -> str:
        """What the stopped pipeline logged about garbage-collector pauses ("" if nothing)."""
        for line in reversed(self.log_tail().splitlines()):
            if "garbage collector: " in line:
                return line.split("garbage collector: ", 1)[1]
        return ""

    def metrics(self) -> dict[str, float]:
        """Its /metrics, flattened: ``name{labels}`` -> value ({} when /metrics is off or unreachable)."""
        if not self.config.http_port:
            return {}
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.config.http_port}/metrics",
                                        timeout=10) as response:
                text = response.read().decode()
        except OSError:
            return {}
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                with contextlib.suppress(ValueError):
                    out[name] = float(value)
        return out

    def log_tail(self) -> str:
        with self.log_path.open("rb") as f:
            f.seek(self._log_offset)
            return f.read().decode(errors="replace")

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.pid)

    def peak_rss_mib(self) -> float:
        return self._status_mib("VmHWM:")

    def rss_mib(self) -> float:
        return self._status_mib("VmRSS:")

    def _status_mib(self, key: str) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM (flush, ack, exit) and wait; SIGKILL only if it does not exit in time."""
        if self._proc is None:
            return 0
        proc, self._proc = self._proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
