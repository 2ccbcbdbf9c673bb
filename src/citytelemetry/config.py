"""Configuration: a TOML file plus ``CITYTELEMETRY_*`` environment overrides, validated up front.

Nested keys use ``__`` in the environment: ``CITYTELEMETRY_INFLUX__URL=http://db:8086``.
Loading does no I/O beyond reading the file; a bad value fails with the key (and file) named.
Secrets are ``SecretStr``: they never appear in logs, reprs or error messages.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, Self
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from citytelemetry.envnames import OTHER_NAMES, setting_names, unknown_names

ENV_PREFIX = "CITYTELEMETRY_"
DEFAULT_CONFIG_FILE = Path("citytelemetry.toml")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _check_url(value: str, schemes: tuple[str, ...], credentials: str) -> str:
    """Scheme, host, and no place for a secret: a URL is printed wherever it goes (logs, errors, `config
    show`), so user info and query strings are refused rather than masked in each of those places."""
    parts = urlsplit(value)
    if parts.scheme not in schemes or not parts.hostname:
        raise ValueError(f"expected a URL like {schemes[0]}://host:port, got {_without_secrets(value)!r}")
    if "@" in parts.netloc:
        raise ValueError(f"user info in the URL is refused (a URL ends up in logs and error texts); {credentials}")
    if parts.query or parts.fragment or value.rstrip("/").endswith(("?", "#")):
        raise ValueError(f"a query string or fragment in the URL is refused (it may hold credentials); {credentials}")
    return value


def _without_secrets(url: str) -> str:
    """``url`` with user info and query cut off, for an error message about it."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}{parts.path}" if parts.scheme else "<not a URL>"


class MqttSettings(Section):
    url: str = "mqtt://127.0.0.1:11883"
    username: str | None = None
    password: SecretStr | None = None
    client_id: str = Field(default="citytelemetry-1", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    # Every pipeline member's client id, for the broker accounts `services up` / `security acl` write (one
    # per member: the broker binds a client id to its account). `name-{1..4}` expands; empty: this client_id.
    members: list[str] = Field(default=[], max_length=64)
    topic_prefix: str = Field(default="ct/v1", pattern=r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$")
    shared_group: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,32}$")
    receive_maximum: int = Field(default=2000, ge=1, le=65535)
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    session_expiry_s: int = Field(default=86_400, ge=0)
    ca_file: Path | None = None
    publish_deadletters: bool = True
    # MQTT 5, or 3.1.1 for brokers that speak nothing newer (NATS, amqtt, Azure IoT Hub); auto tries 5 and
    # falls back to 3.1.1 when the broker answers "unsupported protocol version".
    protocol: Literal["5", "3.1.1", "auto"] = "auto"
    # The one source: our asyncio session on the `mqtt5` packet codec. "aiomqtt" was retired (it needed
    # aiomqtt's private paho client for manual acks, docs/performance.md); the key stays so configs load.
    client: Literal["mqtt5"] = "mqtt5"

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _check_url(value, ("mqtt", "mqtts"), "set mqtt.username and mqtt.password instead")

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        return parts.port or (8883 if parts.scheme == "mqtts" else 1883)

    @property
    def tls(self) -> bool:
        return urlsplit(self.url).scheme == "mqtts"


class InfluxSettings(Section):
    url: str = "http://127.0.0.1:18086"
    api: Literal["v1", "v2"] = "v1"
    database: str = Field(default="citytelemetry", pattern=r"^[A-Za-z0-9_-]{1,64}$")  # v1 db; also v2 query db
    retention_policy: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    org: str | None = None
    bucket: str | None = None
    token: SecretStr | None = None
    timeout_s: float = Field(default=10.0, gt=0, le=300)
    ca_file: Path | None = None  # https:// with a private CA (e.g. `citytelemetry security certs`)
    create_database: bool = True  # v1: CREATE DATABASE at start (needs admin rights; off for least privilege)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _check_url(value, ("http", "https"),
                          "set influx.username and influx.password (1.x) or influx.token (2.x) instead")

    @model_validator(mode="after")
    def _v2_needs(self) -> Self:
        if self.api == "v2":
            missing = [k for k in ("org", "bucket", "token") if getattr(self, k) is None]
            if missing:
                raise ValueError(f"api = 'v2' needs {', '.join('influx.' + k for k in missing)}")
        return self


class AlertmanagerSettings(Section):
    url: str = "http://127.0.0.1:19093"
    ca_file: Path | None = None  # https:// with a private CA

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _check_url(value, ("http", "https"),
                          "citytelemetry sends Alertmanager no credentials: reach it on a private address "
                          "or through a local proxy that adds them")


class AlertSettings(Section):
    """In-stream alerting (the ``[alerts]`` section; docs/alerting.md)."""

    enabled: bool = True
    rules_dir: Path = Path("alert_rules")
    state_file: Path = Path(".run/alert-state.json")
    evaluation_interval_s: float = Field(default=5.0, gt=0, le=300)  # time-based rules: staleness, coverage
    # Event time running this many times faster than the wall clock between two evaluations is a backlog
    # being replayed (drain, catch-up): time-based rules wait (accelerated simulations run at 10-40x).
    catch_up_speed: float = Field(default=100.0, gt=1)
    resend_interval_s: float = Field(default=60.0, gt=0)  # firing alerts are sent again this often
    request_timeout_s: float = Field(default=5.0, gt=0, le=120)  # each POST to Alertmanager
    max_queued: int = Field(default=100_000, ge=100)  # alert events waiting while Alertmanager is unreachable
    state_save_interval_s: float = Field(default=10.0, gt=0)  # state file written this often when changed
    # Resolutions are re-sent this long (as Prometheus does): an Alertmanager restarted before it
    # notified one still announces it. 0: sent once.
    resolved_resend_s: float = Field(default=900.0, ge=0, le=86_400)
    # The pipeline's address as people reach it (behind a proxy, a DNS name): generatorURL of every alert
    # is <public_url>/alerts/<alertname>/<fingerprint>. Unset: http://<http.host>:<http.port>.
    public_url: str | None = None
    # Base of the runbook links (<docs_url>/runbooks.md#<anchor>): where docs/ is published. Unset: the
    # pipeline serves them itself at <public_url>/docs/ from docs_dir.
    docs_url: str | None = None
    docs_dir: Path = Path("docs")
    # Grafana with the generated dashboards (e.g. http://grafana:3000): alert pages link to the system's one.
    dashboards_url: str | None = None

    @field_validator("public_url", "docs_url", "dashboards_url")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected an absolute http(s) URL, got {value!r}: pagers and chats cannot open "
                             "a relative link")
        return value.rstrip("/")

    @property
    def runbook_base_url(self) -> str:
        """Runbook base when the HTTP address is not known (``alerts list``): docs_url, else the repository path."""
        return f"{self.docs_url}/runbooks.md" if self.docs_url else "docs/runbooks.md"


class PipelineSettings(Section):
    profiles_dir: Path = Path("device_profiles/types")
    inventory_dir: Path = Path("device_profiles/inventory")
    # > 0: look at the profile, inventory and alert rule files this often and reload once a change has
    # stood still for one more look (a file half written is not read). 0: reload on SIGHUP only.
    reload_watch_s: float = Field(default=0.0, ge=0)
    batch_size: int = Field(default=5000, ge=1, le=100_000)
    # Bounds how long a line waits for a batch. Bench part (e), 5,000 msg/s, one run each on the quiet machine
    # (2026-12-02): p99 publish -> queryable 580 ms at 0.25 s, 289 ms at 0.1 s (1,000 msg/s: 375 -> 210 ms);
    # earlier, loaded: 0.5 s gave 1.07 s, 1 s gave 1.7 s. At full load batches fill first (5,000 lines), and
    # below it 0.1 s means at most 10 writes a second.
    flush_interval_s: float = Field(default=0.1, gt=0, le=60)
    # InfluxDB writes in flight at once: with one, a write's round trip and the validation of the next
    # batch took turns (bench W2: influxd and the pipeline each about half idle).
    write_concurrency: int = Field(default=2, ge=1, le=16)
    max_buffered_lines: int = Field(default=200_000, ge=1)
    max_payload_bytes: int = Field(default=65_536, ge=256, le=10_000_000)
    max_readings_per_message: int = Field(default=500, ge=1)
    # Bounded so that every accepted ts is a time InfluxDB can store (1677 ... 2262 in nanoseconds).
    max_future_s: float = Field(default=300.0, ge=0, le=10 * 365 * 86_400.0)
    max_age_s: float = Field(default=7 * 86_400.0, gt=0, le=50 * 365 * 86_400.0)
    # Per device, the newest seqs among which a late reading still lands (validate/sequence.py): one bit
    # each, 512 bytes a device at the default.
    sequence_window: int = Field(default=4096, ge=64, le=1_048_576)
    selfmetrics_interval_s: float = Field(default=10.0, gt=0)
    # Allocations between two young-generation collections (gc.set_threshold's first value; Python's is
    # 700). A message allocates a dozen tracked objects and frees nearly all of them by reference counting,
    # so at 700 the collector ran every ~50 messages for almost nothing: W1 in process 23.5 -> 18.1 us per
    # message at 50,000, longest pause 58 -> 6 ms (observability/gcpauses.py, docs/performance.md).
    gc_young_objects: int = Field(default=50_000, ge=100, le=10_000_000)
    shutdown_timeout_s: float = Field(default=20.0, gt=0)
    # Write-ahead spool: messages are acknowledged once fsync'd here. One directory per running instance.
    # None: no spool, acknowledge only once written to InfluxDB (an outage then backs up at the broker).
    spool_dir: Path | None = Path(".run/spool")
    spool_max_bytes: int = Field(default=2 * 1024**3, ge=1024 * 1024)
    spool_memory_lines: int = Field(default=100_000, ge=1)
    # Dead letters: one ct_rejects point per refused message; per device at most deadletter_burst at once,
    # then deadletter_rate_per_s; the rest are suppressed (counted on /metrics and in the next point).
    deadletter_rate_per_s: float = Field(default=1.0, gt=0, le=10_000)
    deadletter_burst: int = Field(default=10, ge=1, le=100_000)
    # Refused messages kept whole for `citytelemetry deadletters replay`; one directory per instance,
    # like the spool. None: no store (ct_rejects keeps a 256-character excerpt only).
    deadletter_dir: Path | None = Path(".run/deadletters")
    deadletter_max_bytes: int = Field(default=256 * 1024**2, ge=1024 * 1024)
    deadletter_max_age_s: float = Field(default=7 * 86_400.0, gt=0)

    @field_validator("spool_dir", "deadletter_dir", "checkpoint_file", mode="before")
    @classmethod
    def _no_store(cls, value: object) -> object:
        return None if value == "" else value  # CITYTELEMETRY_PIPELINE__SPOOL_DIR= : no spool (not ".")
    # Sequence windows, completeness counters and rate-limit buckets, restored at start (run/checkpoint.py).
    # One file per running instance, like the spool. None: every start begins with empty state.
    checkpoint_file: Path | None = Path(".run/device-state.ckpt")
    checkpoint_interval_s: float = Field(default=30.0, gt=0)
    # "k/n": this member owns the k-th of n shares of the inventory's devices and subscribes to exactly their
    # topics (ingest/partition.py), so per-device state lives in one member. None: every device.
    partition: str | None = Field(default=None, pattern=r"^[1-9][0-9]*/[1-9][0-9]*$")
    # The location keys that keep devices together in one member (hashed with the site): every device of a
    # tunnel compartment in one member, so group rules over it see all of it. A device lacking one of them
    # is placed by its id. () : every device by its id.
    partition_by: tuple[str, ...] = ("cabin", "compartment")
    # Partitioned members publish their site tallies (coverage, completeness) on <topic_prefix>/members/
    # and sum their peers' (alerts/peers.py); a peer silent for peer_stale_s of wall time counts as its
    # whole share unmonitored. None: 4 x alerts.evaluation_interval_s.
    peer_stale_s: float | None = Field(default=None, gt=0)

    @field_validator("partition")
    @classmethod
    def _partition(cls, value: str | None) -> str | None:
        if value is not None:
            member, count = (int(x) for x in value.split("/"))
            if member > count:
                raise ValueError(f"member {member} of {count}: k must be at most n in k/n")
        return value


class HttpSettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(default=9108, ge=0, le=65535)  # 0 disables /metrics and /healthz


class ServicesSettings(Section):
    run_dir: Path = Path(".run")
    victoria_metrics_port: int = Field(default=18428, ge=1, le=65535)


class RollupTier(Section):
    """One rollup tier: min/max/mean/last/count per field per device per ``window``, kept ``retention``."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")  # the 1.x retention policy (2.x: a bucket)
    window: str = Field(pattern=r"^[1-9][0-9]*[smhd]$")  # an InfluxQL duration: 1m, 1h, 1d
    retention: str = Field(pattern=r"^(INF|[1-9][0-9]*[hdw])$")  # INF: kept forever
    use_above: str = Field(pattern=r"^[1-9][0-9]*[hdw]$")  # dashboards read this tier for longer ranges
    bytes_per_value: float = Field(default=4.4, gt=0)  # on disk, measured: bench/storage_year.py


class StorageSettings(Section):
    """Retention tiers and rollups (docs/storage.md); ``systems`` lists the tiers a system gets."""

    raw_retention: str = Field(default="90d", pattern=r"^(INF|[1-9][0-9]*[hdw])$")
    tiers: tuple[RollupTier, ...] = (
        # 5 minutes, not 1: a 1-minute rollup of a device that reports every minute is 5 points for 1, and
        # `storage plan` gave 73 GB a year for 1-minute windows over the district against 54 GB of raw.
        RollupTier(name="rollup_5m", window="5m", retention="730d", use_above="2d", bytes_per_value=4.4),
        RollupTier(name="rollup_1h", window="1h", retention="INF", use_above="60d", bytes_per_value=6.4),
    )
    systems: dict[Literal["tunnel", "station", "network"], tuple[str, ...]] = {}  # default: every tier
    rollups: bool = True  # the pipeline keeps the rollups up to date (needs read access: reader_*)
    reader_username: str | None = None  # reads raw windows over /query (least privilege: READ only)
    reader_password: SecretStr | None = None
    interval_s: float = Field(default=10.0, gt=0, le=3600)  # how often due windows are computed
    grace_s: float = Field(default=30.0, ge=0)  # a window is computed this long after it closed
    checkpoint_file: Path = Path(".run/rollup-windows.json")
    recompute_windows: int = Field(default=3, ge=0, le=1000)  # per tier, at start: lost marks of a crash
    raw_bytes_per_value: float = Field(default=4.3, gt=0)  # on disk (TSM), measured: bench/storage_year.py

    @model_validator(mode="after")
    def _known_tiers(self) -> Self:
        names = [t.name for t in self.tiers]
        if len(set(names)) != len(names):
            raise ValueError(f"tier names repeat: {names}")
        for system, chosen in self.systems.items():
            unknown = set(chosen) - set(names)
            if unknown:
                raise ValueError(f"systems.{system}: unknown tiers {sorted(unknown)} (tiers: {names})")
        return self


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid")

    mqtt: MqttSettings = MqttSettings()
    influx: InfluxSettings = InfluxSettings()
    alertmanager: AlertmanagerSettings = AlertmanagerSettings()
    alerts: AlertSettings = AlertSettings()
    pipeline: PipelineSettings = PipelineSettings()
    http: HttpSettings = HttpSettings()
    services: ServicesSettings = ServicesSettings()
    storage: StorageSettings = StorageSettings()

    @model_validator(mode="after")
    def _partition_or_group(self) -> Self:
        if self.pipeline.partition is not None and self.mqtt.shared_group is not None:
            raise ValueError("pipeline.partition and mqtt.shared_group exclude each other: a partitioned member "
                             "subscribes to its own devices' topics, a shared subscription spreads every device")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,  # noqa: ARG003 - no .env files: one place for config
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = cls.model_config.get("toml_file")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings, file_secret_settings]
        if toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)


class ConfigError(Exception):
    """Configuration is invalid; the message names every bad key and the file."""


def load_settings(config_file: Path | None = None) -> Settings:
    """Read ``config_file`` (if given, or ./citytelemetry.toml if present) and the environment."""
    path = config_file
    if path is None and DEFAULT_CONFIG_FILE.is_file():
        path = DEFAULT_CONFIG_FILE
    if path is not None and not path.is_file():
        raise ConfigError(f"{path}: configuration file not found")
    unknown = unknown_names(os.environ, frozenset(setting_names(Settings, ENV_PREFIX)) | OTHER_NAMES, ENV_PREFIX)
    if unknown:  # pydantic-settings would ignore them: the default would run instead, silently
        raise ConfigError(f"unknown environment variable(s); names are {ENV_PREFIX}<SECTION>__<KEY>, "
                          "the keys as `citytelemetry config show` prints them:\n" + "\n".join(unknown))

    class FileSettings(Settings):
        model_config = SettingsConfigDict(toml_file=path)

    origin = f"{path} / environment {ENV_PREFIX}*" if path else f"environment {ENV_PREFIX}*"
    try:
        return FileSettings()
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"])
            lines.append(f"  {key}: {err['msg']}")
        raise ConfigError(f"invalid configuration ({origin}):\n" + "\n".join(lines)) from None
    except ValueError as exc:  # TOML syntax errors
        raise ConfigError(f"{path}: {exc}") from None
