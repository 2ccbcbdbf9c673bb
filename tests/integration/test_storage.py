"""Storage against a real influxd: tiers under least privilege, and ``citytelemetry export`` to CSV and Parquet."""

from __future__ import annotations

import csv
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from pydantic import SecretStr

from citytelemetry.cli.main import main
from citytelemetry.config import InfluxSettings, Settings, StorageSettings
from citytelemetry.security.credentials import SecretKey
from citytelemetry.security.influx import Account, InfluxUsers, setup_least_privilege
from citytelemetry.services import ManagedService, ServiceError, definitions, free_port
from citytelemetry.sink.errors import WriteError
from citytelemetry.sink.influx_v1 import InfluxV1Writer
from citytelemetry.storage.build import build_rollups
from citytelemetry.storage.query import InfluxQL, QueryError
from citytelemetry.storage.retention import apply_v1
from citytelemetry.storage.windows import ALL_DEVICES, Mark

from .pipeline_harness import ROOT, shipped_catalog

pytestmark = pytest.mark.integration
FIVE = 300_000
GAS = "tun-c001-gas1"
TAGS = "cabin=power,compartment=c001,device=tun-c001-gas1,device_type=tunnel_multigas,km=0.0,site=hunnan,system=tunnel"


def _write(url: str, db: str, lines: list[str]) -> None:
    request = urllib.request.Request(f"{url}/write?db={db}&precision=ns", data="\n".join(lines).encode(),
                                     method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 204


def _gas_lines(start_ms: int) -> list[str]:
    """Six readings a minute apart from ``start_ms``: two 5-minute windows."""
    return [f'tunnel_multigas,{TAGS} o2={20.0 + k / 10!r},h2s={k / 4!r},ch4=1.5,co=0.5,sensor_state="ok",seq={k}i '
            f"{(start_ms + k * 60_000) * 1_000_000}" for k in range(6)]


@pytest.fixture(scope="module")
def auth_influx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, InfluxUsers]]:
    run_dir = tmp_path_factory.mktemp("storage-auth")
    key = SecretKey.create(run_dir / "secret")
    users = InfluxUsers(*(Account(n, key.password("influx", n)) for n in ("ct_admin", "ct_writer", "ct_reader")))
    service = ManagedService(definitions.influxd(run_dir, free_port(), auth_enabled=True))
    try:
        service.start()
    except ServiceError as exc:
        pytest.fail(f"cannot start influxd with auth: {exc}", pytrace=False)
    try:
        setup_least_privilege(service.url, "citytelemetry", users)
        yield service.url, users
    finally:
        service.stop()


async def test_tiers_keep_least_privilege_reader_reads_writer_writes(auth_influx: tuple[str, InfluxUsers]) -> None:
    """The admin creates the tiers; the rollups read raw as the read-only user and write as the write-only one."""
    url, users = auth_influx
    storage = StorageSettings(reader_username=users.reader.username, reader_password=SecretStr(users.reader.password))
    influx = InfluxSettings(url=url, database="citytelemetry", username=users.writer.username,
                            password=SecretStr(users.writer.password), create_database=False)
    settings = Settings(influx=influx, storage=storage)
    apply_v1(storage, influx, users.admin)
    start = (int(time.time() * 1000) // FIVE - 4) * FIVE
    writer = InfluxV1Writer(url, "citytelemetry", username=users.writer.username, password=users.writer.password)
    try:
        await writer.write([line.encode() for line in _gas_lines(start)])
    finally:
        await writer.aclose()
    rollups = build_rollups(settings, shipped_catalog())
    try:
        assert await rollups.missing_tiers() == []
        written = await rollups.compute([Mark("rollup_5m", "tunnel_multigas", GAS, start),
                                         Mark("rollup_5m", "tunnel_multigas", ALL_DEVICES, start + FIVE)])
    finally:
        await rollups.aclose()
    assert written == 10  # two windows x five aggregate measurements
    as_reader = InfluxQL(url, "citytelemetry", username=users.reader.username, password=users.reader.password)
    as_writer = InfluxQL(url, "citytelemetry", username=users.writer.username, password=users.writer.password)
    try:
        [series] = await as_reader.run('SELECT "o2", "seq" FROM "rollup_5m"."tunnel_multigas_count"')
        assert series.values == [[start, 5, 5], [start + FIVE, 1, 1]]
        with pytest.raises(QueryError, match="not authorized"):
            await as_writer.run('SELECT * FROM "rollup_5m"."tunnel_multigas_count"')
    finally:
        await as_reader.aclose()
        await as_writer.aclose()
    reader_writes = InfluxV1Writer(url, "citytelemetry", retention_policy="rollup_5m",
                                   username=users.reader.username, password=users.reader.password)
    try:
        with pytest.raises(WriteError):
            await reader_writes.write([b"tunnel_multigas_count,device=x o2=1i 0"])
    finally:
        await reader_writes.aclose()


def _config(tmp_path: Path, influxdb: str, db: str) -> Path:
    config = tmp_path / "citytelemetry.toml"
    config.write_text(f'[influx]\nurl = "{influxdb}"\ndatabase = "{db}"\n[pipeline]\n'
                      f'profiles_dir = "{ROOT / "device_profiles" / "types"}"\n'
                      f'inventory_dir = "{ROOT / "device_profiles" / "inventory"}"\n', encoding="utf-8")
    return config


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"


def test_export_streams_raw_and_rollups_with_units(tmp_path: Path, influxdb: str, influx_db_name: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings(influx=InfluxSettings(url=influxdb, database=influx_db_name))
    apply_v1(settings.storage, settings.influx)
    start = (int(time.time() * 1000) // FIVE - 4) * FIVE
    _write(influxdb, influx_db_name, _gas_lines(start))
    config = _config(tmp_path, influxdb, influx_db_name)
    window = ["--from", _iso(start), "--to", _iso(start + 2 * FIVE)]
    assert main(["--config", str(config), "storage", "backfill", *window]) == 0  # rollups from the raw data
    hours = len({(start + k * 60_000) // 3_600_000 for k in range(6)})  # 1, or 2 across an hour
    assert capsys.readouterr().out == f"{(2 + hours) * 5} rollup points written\n"  # 5 per window
    assert main(["--config", str(config), "export", "--device", GAS, *window, "--format", "csv"]) == 0
    rows = list(csv.reader(capsys.readouterr().out.splitlines()))
    assert rows[0] == ["time", "device", "cabin", "compartment", "device_type", "km", "site", "system",
                       "o2 [%vol]", "h2s [mg/m³]", "ch4 [%LEL]", "co [mg/m³]", "sensor_state", "seq"]
    assert rows[1:] == [[_iso(start + k * 60_000), GAS, "power", "c001", "tunnel_multigas", "0.0", "hunnan", "tunnel",
                         repr(20.0 + k / 10), repr(k / 4), "1.5", "0.5", "ok", str(k)] for k in range(6)]

    out = tmp_path / "gas-5m.parquet"
    assert main(["--config", str(config), "export", "--measurement", "tunnel_multigas", "--tier", "rollup_5m",
                 *window, "--format", "parquet", "--output", str(out)]) == 0
    table = pq.read_table(out)
    assert table.schema.field("o2_max").metadata == {b"unit": b"%vol"}
    assert table.column("o2_count").to_pylist() == [5, 1]
    assert table.column("o2_max").to_pylist() == [20.4, 20.5]
    assert table.column("sensor_state_last").to_pylist() == ["ok", "ok"]
    assert table.column("seq_mean").to_pylist() == [2.0, 5.0]
    assert [t.value for t in table.column("time")] == [start, start + FIVE]  # timestamp[ms, UTC]
