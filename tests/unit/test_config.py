from __future__ import annotations

import re
from pathlib import Path

import pytest

from citytelemetry.config import ENV_PREFIX, ConfigError, Settings, load_settings
from citytelemetry.envnames import OTHER_NAMES, setting_names


def test_example_config_loads() -> None:
    settings = load_settings(Path("deploy/citytelemetry.example.toml"))
    assert settings.mqtt.port == 11883
    assert settings.influx.api == "v1"


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[influx]\nurl = "http://db:8086"\n')
    monkeypatch.setenv("CITYTELEMETRY_INFLUX__URL", "http://other:8086")
    assert load_settings(config).influx.url == "http://other:8086"


def test_bad_value_names_the_key_and_the_file(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[mqtt]\nurl = "http://broker"\n[pipeline]\nbatch_size = 0\n')
    with pytest.raises(ConfigError) as info:
        load_settings(config)
    message = str(info.value)
    assert str(config) in message
    assert "mqtt.url" in message
    assert "pipeline.batch_size" in message


def test_unknown_key_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[influx]\ndatabse = 'x'\n")
    with pytest.raises(ConfigError, match=r"influx\.databse"):
        load_settings(config)


def test_v2_requires_org_bucket_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CITYTELEMETRY_INFLUX__API", "v2")
    monkeypatch.setenv("CITYTELEMETRY_INFLUX__ORG", "district")
    with pytest.raises(ConfigError, match=r"influx\.bucket, influx\.token"):
        load_settings()


def test_secrets_are_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CITYTELEMETRY_MQTT__PASSWORD", "hunter2")
    settings = load_settings()
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in str(settings.model_dump(mode="json"))
    assert settings.mqtt.password is not None
    assert settings.mqtt.password.get_secret_value() == "hunter2"


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="configuration file not found"):
        load_settings(tmp_path / "absent.toml")


def test_toml_syntax_error_names_the_file(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[mqtt\n")
    with pytest.raises(ConfigError, match=str(config)):
        load_settings(config)


def test_mistyped_environment_variables_fail_with_the_nearest_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CITYTELEMETRY_INFLUX_URL", "http://db:8086")  # one underscore: would be ignored
    monkeypatch.setenv("CITYTELEMETRY_MQTTT__URL", "mqtt://broker:1883")
    monkeypatch.setenv("CITYTELEMETRY_NOTHING_LIKE_IT", "1")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert str(info.value).splitlines()[1:] == [
        "  CITYTELEMETRY_INFLUX_URL: no such setting (did you mean CITYTELEMETRY_INFLUX__URL?)",
        "  CITYTELEMETRY_MQTTT__URL: no such setting (did you mean CITYTELEMETRY_MQTT__URL?)",
        "  CITYTELEMETRY_NOTHING_LIKE_IT: no such setting",
    ]


def test_variables_the_project_reads_elsewhere_are_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CITYTELEMETRY_PURE_PYTHON", "CITYTELEMETRY_REINSTALL", "CITYTELEMETRY_INFLUX_PASSWORD",
                 "CITYTELEMETRY_INFLUX_TOKEN", "CITYTELEMETRY_ALERTS__RULES_DIR", "CITYTELEMETRY_PIPELINE"):
        monkeypatch.setenv(name, "x" if name != "CITYTELEMETRY_PIPELINE" else "{}")
    monkeypatch.setenv("CITYTELEMETRY_ALERTS__RULES_DIR", "alert_rules")
    assert load_settings().alerts.rules_dir == Path("alert_rules")


PENDING: set[str] = set()  # names used before their setting is merged (none now: pipeline.partition landed)


def test_every_variable_named_in_the_repository_is_valid() -> None:
    """A name a script, test, bench or doc uses must not be refused at start (nor be a typo itself)."""
    valid = frozenset(setting_names(Settings, ENV_PREFIX)) | OTHER_NAMES
    root = Path(__file__).resolve().parents[2]
    used: dict[str, Path] = {}
    files = [root / "README.md", root / "Containerfile"]
    for folder in ("src", "scripts", "tests", "bench", "simulators", "deploy", "docs"):
        files += (root / folder).rglob("*")
    for path in files:
        if path.is_file() and path.suffix not in {".pyc", ".so"}:
            for name in re.findall(r"\bCITYTELEMETRY_[A-Z0-9_]*[A-Z0-9]\b", path.read_text(errors="replace")):
                used.setdefault(name, path)
    used.pop("CITYTELEMETRY_NOTHING_LIKE_IT", None)  # this file's own example of a typo
    used.pop("CITYTELEMETRY_INFLUX_URL", None)
    used.pop("CITYTELEMETRY_MQTTT__URL", None)
    assert {name: str(path) for name, path in used.items() if name not in valid | PENDING} == {}
    assert "CITYTELEMETRY_INFLUX__URL" in used


@pytest.mark.parametrize("key", ["SPOOL_DIR", "DEADLETTER_DIR"])
def test_an_empty_directory_setting_turns_the_store_off(key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(f"CITYTELEMETRY_PIPELINE__{key}", "")
    assert getattr(load_settings(None).pipeline, key.lower()) is None  # not Path("."), the current directory
