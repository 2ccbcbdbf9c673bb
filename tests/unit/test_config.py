from __future__ import annotations

from pathlib import Path

import pytest

from citytelemetry.config import ConfigError, load_settings


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
