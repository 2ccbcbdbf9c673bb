"""``citytelemetry check`` and ``deadletters list|show|replay --dry-run``: no broker, no database."""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import orjson
import pytest

from citytelemetry.cli import check as check_cli
from citytelemetry.cli import deadletters as deadletters_cli
from citytelemetry.cli.deadletters import since_ms
from citytelemetry.config import PipelineSettings, Settings
from citytelemetry.deadletters import summarize
from citytelemetry.deadletters.store import DeadLetterStore
from citytelemetry.records import Reason, Rejection

ROOT = Path(__file__).resolve().parents[2]
DEVICE = "tun-c001-gas1"
TOPIC = f"ct/v1/hunnan/tunnel/{DEVICE}/telemetry"


def _settings(tmp_path: Path) -> Settings:
    return Settings(pipeline=PipelineSettings(profiles_dir=ROOT / "device_profiles" / "types",
                                              inventory_dir=ROOT / "device_profiles" / "inventory",
                                              deadletter_dir=tmp_path / "dl"))


def _run(argv: list[str], settings: Settings) -> tuple[int, str]:
    """What ``citytelemetry <argv>`` does with ``settings`` (cli/main.py loads them from the config file)."""
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command", required=True)
    check_cli.add_commands(commands)
    deadletters_cli.add_commands(commands)
    args = parser.parse_args(argv)
    out = io.StringIO()
    module = check_cli if args.command == "check" else deadletters_cli
    return module.handle(args, settings, out=out), out.getvalue()


def test_check_prints_the_lines_and_every_refusal_with_its_reason(tmp_path: Path) -> None:
    now = time.time_ns() // 1_000_000
    payload = tmp_path / "m.json"
    payload.write_bytes(orjson.dumps({"device": DEVICE, "seq": 5, "ts": now,
                                      "values": {"o2": 20.9, "co2": 410, "ch4": 900.0}}))
    code, text = _run(["check", "--topic", TOPIC, "--payload", str(payload)], _settings(tmp_path))
    lines = text.splitlines()
    assert code == 1
    assert lines[0].startswith("tunnel_multigas,")
    assert lines[0].endswith(f" o2=20.9,seq=5i {now * 1_000_000}")
    assert lines[1] == "# refused unknown_measurement field 'co2' seq 5: 'co2' is not a measurement of tunnel_multigas"
    assert lines[2].startswith("# refused out_of_range field 'ch4' seq 5: ch4: 900.0 %LEL outside [0")
    assert lines[3] == "# 2 refused: the pipeline would also write one ct_rejects point"
    assert not (tmp_path / "dl").exists()  # nothing written anywhere


def test_check_of_a_clean_message_exits_0(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    body = orjson.dumps({"device": DEVICE, "seq": 1, "ts": time.time_ns() // 1_000_000, "values": {"o2": 20.9}})
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(body)))
    code, text = _run(["check", "--topic", TOPIC, "--payload", "-"], _settings(tmp_path))
    assert code == 0
    assert len(text.splitlines()) == 1


def test_list_show_and_a_dry_run_replay(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    store = DeadLetterStore(tmp_path / "dl")
    store.open()
    now = time.time_ns() // 1_000_000
    good = orjson.dumps({"device": DEVICE, "seq": 1, "ts": now, "values": {"o2": 20.9}})
    bad = orjson.dumps({"device": DEVICE, "seq": 2, "ts": now + 1, "values": {"o2": 99.0}})
    for payload, reason in ((good, Reason.STALE_SEQUENCE), (bad, Reason.OUT_OF_RANGE)):
        store.add_message(summarize([Rejection(reason=reason, detail="d", topic=TOPIC, excerpt="", device_id=DEVICE)]),
                          received_ms=now, payload=payload)
    store.add_message(summarize([Rejection(reason=Reason.NOT_UTF8, detail="d", topic=TOPIC, excerpt="")]),
                      received_ms=now - 3_600_000, payload=b"\xff")
    store.close()
    code, text = _run(["deadletters", "list", "--since", "30m"], settings)
    assert code == 0
    assert [row.split("\t")[2] for row in text.splitlines()] == ["stale_sequence=1", "out_of_range=1"]
    code, text = _run(["deadletters", "show", "1.3"], settings)
    assert "payload:  1 bytes\n(not UTF-8, hex) ff" in text
    code, text = _run(["deadletters", "replay", "--device", DEVICE, "--dry-run"], settings)
    assert code == 1
    lines = text.splitlines()
    assert lines[0].startswith("tunnel_multigas,")
    assert lines[0].endswith(" o2=20.9,seq=1i " + str(now * 1_000_000))
    assert lines[1] == "# replayed 2 messages: 1 pass now, 1 still refused; would write 1 points"
    assert lines[2].startswith("# still refused 1.2 out_of_range=1: o2: 99.0 %vol outside [0")
    code, _ = _run(["deadletters", "show", "9.9"], settings)
    assert code == 2


def test_since_takes_epoch_ms_iso_and_ages() -> None:
    assert since_ms("1780000000000") == 1_780_000_000_000
    assert since_ms("2026-05-28T20:26:40Z") == 1_780_000_000_000
    assert since_ms("30m", now_ms=10_000_000) == 10_000_000 - 1_800_000
    with pytest.raises(argparse.ArgumentTypeError):
        since_ms("yesterday")


def test_an_empty_deadletter_dir_means_no_store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from citytelemetry.config import load_settings

    monkeypatch.setenv("CITYTELEMETRY_PIPELINE__DEADLETTER_DIR", "")
    monkeypatch.chdir(tmp_path)
    assert load_settings().pipeline.deadletter_dir is None


def test_check_names_a_payload_file_it_cannot_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, text = _run(["check", "--topic", TOPIC, "--payload", str(tmp_path / "missing.json")], _settings(tmp_path))
    assert (code, text) == (2, "")
    assert "missing.json: No such file or directory" in capsys.readouterr().err


def test_metrics_show_suppressed_refused_and_the_store() -> None:
    from collections import Counter

    from prometheus_client import generate_latest

    from citytelemetry.deadletters.store import StoreStats
    from citytelemetry.observability.prometheus import registry_for
    from citytelemetry.observability.stats import PipelineStats

    stats = PipelineStats(deadletters_suppressed=Counter({"unknown_measurement": 15}),
                          records_refused=Counter({"deadletter": 1}), deadletter_store=StoreStats(entries_written=3))
    text = generate_latest(registry_for(stats)).decode()
    assert 'citytelemetry_deadletters_suppressed_total{reason="unknown_measurement"} 15.0' in text
    assert 'citytelemetry_records_refused_total{kind="deadletter"} 1.0' in text
    assert "citytelemetry_deadletter_store_entries_total 3.0" in text
