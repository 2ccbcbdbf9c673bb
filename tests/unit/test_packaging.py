"""deploy/systemd/ and the Containerfile: verified by systemd's own tools and against the repository."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "deploy" / "systemd"
INSTALLED = "/opt/citytelemetry/.venv/bin/citytelemetry"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:  # not a skip: scripts/install installs it (Debian package systemd)
        pytest.fail(f"{name} not found: run scripts/install", pytrace=False)
    return path


def _units_here(tmp_path: Path) -> list[Path]:
    """The units with ExecStart pointing at this environment's entry point (verify checks it exists)."""
    entry = Path(sys.executable).with_name("citytelemetry")
    assert entry.is_file(), entry
    rendered = []
    for name, as_name in (("citytelemetry.service", "citytelemetry.service"),
                          ("citytelemetry@.service", "citytelemetry@1-4.service")):
        text = (UNITS / name).read_text(encoding="utf-8")
        assert INSTALLED in text
        target = tmp_path / as_name
        target.write_text(text.replace(INSTALLED, str(entry)), encoding="utf-8")
        rendered.append(target)
    return rendered


def test_systemd_analyze_verify_finds_nothing(tmp_path: Path) -> None:
    units = _units_here(tmp_path)
    result = subprocess.run([_tool("systemd-analyze"), "verify", "--man=no", *map(str, units)],
                            capture_output=True, text=True, check=False)
    # verify exits 0 on an unknown or misplaced key and only warns: any output is a finding.
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_the_sandbox_exposes_little(tmp_path: Path) -> None:
    # --threshold is on systemd's 0-100 scale: 20 is an overall exposure of 2.0 ("OK"; 10.0 is "UNSAFE").
    for unit in _units_here(tmp_path):
        result = subprocess.run([_tool("systemd-analyze"), "security", "--offline=yes", "--threshold=20",
                                 "--no-pager", str(unit)], capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout[-2000:]
        assert re.search(r"Overall exposure level for \S+: [01]\.\d OK", result.stdout), result.stdout[-500:]


def test_the_template_instance_names_its_partition() -> None:
    # citytelemetry@1-4.service: %I is "1/4", the value pipeline.partition takes.
    result = subprocess.run([_tool("systemd-escape"), "--template=citytelemetry@.service", "1/4"],
                            capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "citytelemetry@1-4.service"
    text = (UNITS / "citytelemetry@.service").read_text(encoding="utf-8")
    assert "Environment=CITYTELEMETRY_PIPELINE__PARTITION=%I\n" in text
    assert "Environment=CITYTELEMETRY_MQTT__CLIENT_ID=citytelemetry-%i\n" in text
    assert "StateDirectory=citytelemetry/%i\n" in text


def test_both_units_restart_and_keep_state_in_the_state_directory() -> None:
    for name in ("citytelemetry.service", "citytelemetry@.service"):
        text = (UNITS / name).read_text(encoding="utf-8")
        for directive in ("Restart=on-failure", "NoNewPrivileges=yes", "ProtectSystem=strict",
                          "ExecReload=/bin/kill -HUP $MAINPID", "RestartPreventExitStatus=2"):
            assert f"\n{directive}\n" in text, (name, directive)
        state = re.search(r"\nStateDirectory=(\S+)\n", text)
        assert state is not None
        for path in re.findall(r"=/var/lib/(\S+?)/(?:spool|alert-state\.json|run)\n", text):
            assert path == state.group(1), (name, path)


def _containerfile() -> list[tuple[str, str]]:
    text = (ROOT / "Containerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    return [(line.split(None, 1)[0], line.split(None, 1)[1]) for line in text.splitlines()
            if line.strip() and not line.startswith("#")]


def test_every_path_the_containerfile_copies_exists() -> None:
    copies = [shlex.split(args) for instruction, args in _containerfile() if instruction == "COPY"]
    assert copies
    for *sources, _target in copies:
        for source in sources:
            assert (ROOT / source).exists(), source


def test_the_containerfile_copies_every_package_the_install_builds() -> None:
    packaged = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    wanted = {"pyproject.toml", "README.md", *packaged["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]}
    copied = {source.rstrip("/") for instruction, args in _containerfile() if instruction == "COPY"
              for source in shlex.split(args)[:-1]}
    assert {w for w in wanted if not any(w == c or w.startswith(c + "/") for c in copied)} == set()


def test_the_containerfile_installs_with_scripts_install() -> None:
    runs = [args for instruction, args in _containerfile() if instruction == "RUN"]
    assert runs[0].startswith("scripts/install --pipeline-only ")
    # The option is one scripts/install knows (an unknown one exits 2).
    usage = subprocess.run(["bash", str(ROOT / "scripts" / "install"), "--help"], capture_output=True, text=True,
                           check=True)
    assert "--pipeline-only" in usage.stdout
    bogus = subprocess.run(["bash", str(ROOT / "scripts" / "install"), "--no-such-option"], capture_output=True,
                           text=True, check=False)
    assert bogus.returncode == 2


def test_the_containerfile_runs_the_entry_point_the_install_creates() -> None:
    instructions = dict(_containerfile())
    assert instructions["ENTRYPOINT"] == '["/opt/citytelemetry/.venv/bin/citytelemetry"]'
    assert instructions["WORKDIR"] == "/var/lib/citytelemetry"  # the last one wins
    assert "/livez" in instructions["HEALTHCHECK"]


MDWE_CHECK = """
import asyncio, ctypes, sys
from pathlib import Path
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN (Linux >= 6.3)
    sys.exit(f"prctl(PR_SET_MDWE) failed: errno {ctypes.get_errno()}")
import aiohttp, orjson, yaml
import citytelemetry.ingest.factory, citytelemetry.ingest.mqtt5_source, citytelemetry.ingest.mqtt311
from citytelemetry.cli.main import main
from citytelemetry.config import HttpSettings, PipelineSettings, Settings
from citytelemetry.profiles import load_catalog
from citytelemetry.run import make_pipeline
root = Path(sys.argv[1])
types, inventory = root / "device_profiles" / "types", root / "device_profiles" / "inventory"
catalog = load_catalog(types, inventory)
settings = Settings(http=HttpSettings(port=0),
                    pipeline=PipelineSettings(spool_dir=None, profiles_dir=types, inventory_dir=inventory))
assert asyncio.run(make_pipeline(settings, catalog).reload()).applied
sys.exit(main(["--config", str(root / "deploy" / "citytelemetry.example.toml"), "alerts", "list"]))
"""


def test_the_pipeline_runs_with_memory_that_is_never_writable_and_executable() -> None:
    """MemoryDenyWriteExecute=yes: the kernel's own W^X switch (prctl PR_SET_MDWE) on a process that imports
    every native module the pipeline uses, builds it, reloads it and runs a command."""
    result = subprocess.run([sys.executable, "-c", MDWE_CHECK, str(ROOT)], capture_output=True, text=True,
                            timeout=120, check=False, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "tunnel_multigas_ch4_high" in result.stdout
