"""What it takes to run one service: its command, files, ports and readiness probe."""

from __future__ import annotations

import shutil
import string
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from citytelemetry.services.errors import BinaryNotFoundError, ServiceError
from citytelemetry.services.probes import Probe

# Debian installs mosquitto in /usr/sbin, which is not on a normal user's PATH.
_SBIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")


@dataclass(frozen=True, slots=True)
class ConfigFile:
    """A file written into the run directory before start: a ``string.Template`` or a verbatim copy."""

    source: Path
    target: Path
    variables: Mapping[str, str] | None = None  # None: copy the source as it is

    def write(self) -> None:
        try:
            text = self.source.read_text(encoding="utf-8")
        except OSError as exc:
            raise ServiceError(f"cannot read config template {self.source}: {exc}") from exc
        if self.variables is not None:
            try:
                text = string.Template(text).substitute(self.variables)
            except (KeyError, ValueError) as exc:
                raise ServiceError(f"{self.source}: bad or unknown placeholder {exc}") from exc
        tmp = self.target.with_name(self.target.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(self.target)


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """One local service instance, fully described; building it does no I/O.

    ``home`` is the service's own directory inside the run directory. ``marker`` is a path that
    appears in the command line of exactly this instance (its config file, or for a service without
    one its data directory): that is how its process is recognised later.
    """

    name: str
    binary: str
    args: tuple[str, ...]
    home: Path
    marker: Path
    url: str
    ports: tuple[int, ...]  # every port the process binds; the first is the one in ``url``
    probe: Probe
    files: tuple[ConfigFile, ...] = ()
    dirs: tuple[Path, ...] = ()
    drop_env_prefixes: tuple[str, ...] = ()  # environment variables the service would read as config

    @property
    def port(self) -> int:
        return self.ports[0]

    @property
    def log_file(self) -> Path:
        return self.home / f"{self.name}.log"

    @property
    def pid_file(self) -> Path:
        return self.home / f"{self.name}.pid"


def find_binary(name: str) -> str:
    """The absolute path of an executable, looking in PATH and the sbin directories."""
    found = shutil.which(name) or shutil.which(name, path=":".join(_SBIN_DIRS))
    if found is None:
        raise BinaryNotFoundError(f"{name}: executable not found on PATH or in /usr/sbin; run scripts/install")
    return found
