"""citytelemetry.services against the real binaries: start, answer, stop, and never touch a stranger."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from citytelemetry.cli.services import services_command
from citytelemetry.config import Settings
from citytelemetry.services import (
    ManagedService,
    PortInUseError,
    ServiceSpec,
    ServiceStartError,
    ServiceState,
    TcpProbe,
    definitions,
    free_port,
    port_is_free,
)
from tests.conftest import MqttBroker, influx_query

pytestmark = pytest.mark.integration


def _http(method: str, url: str, body: bytes | None = None, content_type: str = "text/plain") -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": content_type})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, response.read()


def _eventually(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)
    return result


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


# --- each service answers -------------------------------------------------------------------------


def test_influxd_stores_a_point_and_answers_influxql(influxdb: str, influx_db_name: str) -> None:
    influx_query(influxdb, influx_db_name, f'CREATE DATABASE "{influx_db_name}"')
    ts_ms = int(time.time() * 1000)
    status, _ = _http(
        "POST",
        f"{influxdb}/write?db={influx_db_name}&precision=ms",
        f"air,site=s1,device=d7 temp=21.5,ok=true {ts_ms}".encode(),
    )
    assert status == 204

    series = influx_query(influxdb, influx_db_name, "SELECT temp, ok, device FROM air")

    assert series == [
        {"name": "air", "columns": ["time", "temp", "ok", "device"], "values": [[ts_ms, 21.5, True, "d7"]]}
    ]


def test_mosquitto_delivers_qos1_from_publisher_to_subscriber(mosquitto: MqttBroker, mqtt_topic_prefix: str) -> None:
    topic = f"{mqtt_topic_prefix}/reading"
    received: list[mqtt.MQTTMessage] = []
    subscribed, got = threading.Event(), threading.Event()
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sub-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5)
    sub.on_subscribe = lambda *_: subscribed.set()
    sub.on_message = lambda _c, _u, msg: (received.append(msg), got.set())
    sub.connect(mosquitto.host, mosquitto.port)
    sub.loop_start()
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5)
    try:
        sub.subscribe(topic, qos=1)
        assert subscribed.wait(5)
        pub.connect(mosquitto.host, mosquitto.port)
        pub.loop_start()
        pub.publish(topic, b'{"temp": 21.5}', qos=1).wait_for_publish(5)
        assert got.wait(5)
    finally:
        for client in (pub, sub):
            client.disconnect()
            client.loop_stop()

    assert [(m.topic, m.payload, m.qos) for m in received] == [(topic, b'{"temp": 21.5}', 1)]


def test_alertmanager_accepts_an_alert_and_lists_it(alertmanager: str) -> None:
    name = f"TestAlert{uuid.uuid4().hex[:8]}"
    alert = {"labels": {"alertname": name, "severity": "warning"}, "annotations": {"summary": "test"}}
    status, _ = _http("POST", f"{alertmanager}/api/v2/alerts", json.dumps([alert]).encode(), "application/json")
    assert status == 200

    query = urllib.parse.urlencode({"filter": f'alertname="{name}"'})
    _, body = _http("GET", f"{alertmanager}/api/v2/alerts?{query}")
    alerts = json.loads(body)

    assert [(a["labels"], a["annotations"], a["status"]["state"]) for a in alerts] == [
        ({"alertname": name, "severity": "warning"}, {"summary": "test"}, "active")
    ]


def _vm_rows_added(url: str) -> int:
    _, body = _http("GET", f"{url}/metrics")
    match = re.search(rb"^vm_rows_added_to_storage_total (\d+)$", body, re.MULTILINE)
    assert match is not None
    return int(match.group(1))


def test_victoria_metrics_takes_v2_line_protocol_and_exports_measurement_field_series(
    victoria_metrics: str,
) -> None:
    measurement = f"m{uuid.uuid4().hex[:8]}"
    ts_ms = int(time.time() * 1000)
    lines = f'{measurement},site=s1 temp=21.5,hum=40i,note="x" {ts_ms}\n{measurement},site=s2 temp=19 {ts_ms - 1000}'
    before = _vm_rows_added(victoria_metrics)
    write = f"{victoria_metrics}/api/v2/write?org=city&bucket=telemetry&precision=ms"

    status, _ = _http("POST", write, lines.encode())

    assert status == 204  # accepted, not yet stored: rows reach storage within about a second
    _eventually(lambda: _vm_rows_added(victoria_metrics) >= before + 4)
    _http("GET", f"{victoria_metrics}/internal/force_flush")  # make them searchable now
    query = urllib.parse.urlencode({"match[]": f'{{__name__=~"{measurement}_.*"}}'})
    _, body = _http("GET", f"{victoria_metrics}/api/v1/export?{query}")
    rows = [json.loads(line) for line in body.splitlines()]

    # one series per field, named <measurement>_<field>; tags become labels; org and bucket add none;
    # a string field is kept as a series of zeros
    assert sorted(((r["metric"], r["values"], r["timestamps"]) for r in rows), key=repr) == sorted(
        [
            ({"__name__": f"{measurement}_temp", "site": "s1"}, [21.5], [ts_ms]),
            ({"__name__": f"{measurement}_hum", "site": "s1"}, [40], [ts_ms]),
            ({"__name__": f"{measurement}_note", "site": "s1"}, [0], [ts_ms]),
            ({"__name__": f"{measurement}_temp", "site": "s2"}, [19], [ts_ms - 1000]),
        ],
        key=repr,
    )


# --- lifecycle -----------------------------------------------------------------------------------

SPECS: dict[str, Callable[[Path, int], ServiceSpec]] = {
    "mosquitto": definitions.mosquitto,
    "influxd": definitions.influxd,
    "alertmanager": definitions.alertmanager,
    "victoria-metrics": definitions.victoria_metrics,
}


@pytest.mark.parametrize("kind", SPECS)
def test_stop_leaves_no_process_and_frees_the_port(tmp_path: Path, kind: str) -> None:
    service = ManagedService(SPECS[kind](tmp_path, free_port()))
    assert service.start() is True
    pid = service.pid
    assert pid is not None
    assert service.status().state is ServiceState.RUNNING
    assert service.start() is False  # already running: nothing new

    assert service.stop() is True

    assert not _alive(pid)
    assert not service.spec.pid_file.exists()
    assert port_is_free(service.spec.port)
    assert service.status().state is ServiceState.STOPPED
    assert service.stop() is False


def test_context_manager_starts_stops_and_refuses_reentry(tmp_path: Path) -> None:
    service = ManagedService(definitions.mosquitto(tmp_path, free_port()))
    with service:
        pid = service.pid
        assert pid is not None
        with pytest.raises(RuntimeError, match="already in use"), service:
            pass
        assert service.pid == pid
    assert service.pid is None
    assert not _alive(pid)


def test_a_service_that_dies_at_start_reports_its_log_tail(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "mosquitto.conf.template").write_text("listener ${port} 127.0.0.1\nno_such_option 1\n")
    service = ManagedService(definitions.mosquitto(tmp_path / "run", free_port(), templates=templates))

    with pytest.raises(ServiceStartError, match=r"(?s)mosquitto exited during start.*no_such_option"):
        service.start()

    assert service.pid is None
    assert not service.spec.pid_file.exists()


def test_start_refuses_a_port_held_by_a_stranger(tmp_path: Path, foreign_listener: int) -> None:
    service = ManagedService(definitions.influxd(tmp_path, foreign_listener))

    with pytest.raises(PortInUseError, match=f"127.0.0.1:{foreign_listener} is in use"):
        service.start()

    assert service.status().state is ServiceState.PORT_TAKEN


def _python_service(tmp_path: Path, code: str) -> ServiceSpec:
    """A stand-in service: ``python -c code <port> <marker>``, ready once it listens on the port."""
    port = free_port()
    marker = tmp_path / "stand-in.conf"
    return ServiceSpec(
        name="stand-in",
        binary=sys.executable,
        args=("-c", code, str(port), str(marker)),
        home=tmp_path,
        marker=marker,
        url=f"tcp://127.0.0.1:{port}",
        ports=(port,),
        probe=TcpProbe("127.0.0.1", port),
    )


def test_stop_kills_a_process_that_ignores_sigterm(tmp_path: Path) -> None:
    code = (
        "import signal, socket, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "s = socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(); time.sleep(300)\n"
    )
    service = ManagedService(_python_service(tmp_path, code), stop_timeout=0.5)
    service.start()
    pid = service.pid
    assert pid is not None
    started = time.monotonic()

    assert service.stop() is True

    assert time.monotonic() - started >= 0.5
    assert not _alive(pid)


def test_a_service_that_never_gets_ready_times_out_with_its_log_tail(tmp_path: Path) -> None:
    code = "import sys, time\nprint('warming up forever', flush=True)\ntime.sleep(300)\n"
    service = ManagedService(_python_service(tmp_path, code), start_timeout=0.5)

    with pytest.raises(ServiceStartError, match=r"(?s)stand-in not ready at tcp://.* after 0.5 s.*warming up forever"):
        service.start()

    assert service.pid is None
    assert not service.spec.pid_file.exists()


# --- services_command ----------------------------------------------------------------------------


@pytest.fixture
def foreign_listener() -> Iterator[int]:
    """A port held by a process these tests did not start through citytelemetry.services."""
    port = free_port()
    code = (
        "import socket, sys, time\n"
        "s = socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen()\n"
        "print('ready', flush=True); time.sleep(300)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(port)], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n"
        yield port
        assert proc.poll() is None, "the foreign listener must survive"
    finally:
        proc.kill()
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


def _settings(run_dir: Path, mqtt_port: int | None = None) -> Settings:
    return Settings(
        mqtt={"url": f"mqtt://127.0.0.1:{mqtt_port or free_port()}"},
        influx={"url": f"http://127.0.0.1:{free_port()}"},
        alertmanager={"url": f"http://127.0.0.1:{free_port()}"},
        services={"run_dir": run_dir},
    )


def _command(action: Literal["up", "down", "status"], settings: Settings) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = services_command(action, settings, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def _pids(output: str) -> dict[str, str]:
    return {line.split()[0]: line.split()[1] for line in output.splitlines()}


def test_up_is_idempotent_and_down_stops_what_it_started(tmp_path: Path) -> None:
    settings = _settings(tmp_path / "run")
    try:
        code, out, err = _command("up", settings)
        assert (code, err) == (0, "")
        *services, tiers = out.splitlines()
        assert [line.split()[-1] for line in services] == ["(started)"] * 3
        assert tiers == ("retention policies of 'citytelemetry': autogen 90d, rollup_5m 730d, rollup_1h INF, "
                         "ct_meta INF")
        shown = influx_query(settings.influx.url, "citytelemetry", "SHOW RETENTION POLICIES")[0]["values"]
        assert [(name, duration) for name, duration, *_ in shown] == [
            ("autogen", "2160h0m0s"), ("rollup_5m", "17520h0m0s"), ("rollup_1h", "0s"), ("ct_meta", "0s")]
        first = _pids("\n".join(services))

        code, out, err = _command("up", settings)
        assert (code, err) == (0, "")
        assert [line.split("  ")[-1] for line in out.splitlines()[:-1]] == ["(already running)"] * 3
        assert _pids("\n".join(out.splitlines()[:-1])) == first

        code, out, _ = _command("status", settings)
        assert code == 0
        assert [line.split()[-1] for line in out.splitlines()] == ["running"] * 3
    finally:
        code, out, _ = _command("down", settings)
    assert code == 0
    pids = [pid.removeprefix("pid=") for pid in first.values()]
    assert [line.split("  (")[-1] for line in out.splitlines()] == [f"stopped pid {pid})" for pid in reversed(pids)]
    assert not any(_alive(int(pid)) for pid in pids)
    assert _command("status", settings)[0] == 3


def test_down_leaves_alone_instances_of_another_run_dir_even_behind_a_forged_pid_file(tmp_path: Path) -> None:
    other = ManagedService(definitions.mosquitto(tmp_path / "other", free_port()))
    with other:
        settings = _settings(tmp_path / "run")
        forged = definitions.mosquitto(settings.services.run_dir, settings.mqtt.port).pid_file
        forged.parent.mkdir(parents=True)
        forged.write_text(f"{other.pid}\n")

        code, out, _ = _command("down", settings)

        assert code == 0
        assert out.splitlines()[-1].startswith("mosquitto ")
        assert out.splitlines()[-1].endswith("stopped  (was not running)")
        assert other.pid is not None
        assert other.status().state is ServiceState.RUNNING


def test_up_refuses_a_port_taken_by_a_foreign_listener_and_starts_nothing(
    tmp_path: Path, foreign_listener: int
) -> None:
    settings = _settings(tmp_path / "run", mqtt_port=foreign_listener)

    code, out, err = _command("up", settings)

    assert code == 1
    assert out == ""
    assert f"mosquitto: mqtt://127.0.0.1:{foreign_listener} is in use" in err
    assert "refusing to start anything" in err
    code, out, _ = _command("status", settings)
    assert code == 3
    assert [line.split("  ")[-1].strip() for line in out.splitlines()] == ["port taken", "stopped", "stopped"]
    assert _command("down", settings)[0] == 0  # and down does not touch the stranger (checked by the fixture)
