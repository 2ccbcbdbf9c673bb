"""The command line itself: global options anywhere, --version, --help, a closed pipe."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from citytelemetry import __version__
from citytelemetry.cli.main import COMMANDS, _parser, main


def test_config_is_accepted_after_the_command_and_after_a_nested_one(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[influx]\ndatabase = "after_the_command"\n')
    assert main(["config", "show", "--config", str(config)]) == 0
    assert json.loads(capsys.readouterr().out)["influx"]["database"] == "after_the_command"
    assert main(["--config", str(config), "config", "show"]) == 0
    assert json.loads(capsys.readouterr().out)["influx"]["database"] == "after_the_command"
    assert main(["alerts", "list", "--config", str(tmp_path / "absent.toml")]) == 2
    assert capsys.readouterr().err == f"citytelemetry: {tmp_path / 'absent.toml'}: configuration file not found\n"


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out == f"citytelemetry {__version__}\n"


def test_help_lists_every_command_with_what_follows_it_in_plain_text() -> None:
    text = _parser().format_help()
    listed = text.split("commands:\n", 1)[1].split("\n\n", 1)[0]
    names = [line.split()[0] for line in listed.splitlines() if line.startswith("  ") and not line.startswith("   ")]
    assert names == list(COMMANDS)
    for line in ("  profiles check ", "  services up|down|status ", "  alerts list|replay|firing ",
                 "  config show ", "  reload "):
        assert line in listed, line
    for markup in ("``", "{run", ":class:", "`"):
        assert markup not in text, markup


def test_a_closed_pipe_exits_quietly() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    process = subprocess.Popen([sys.executable, "-m", "citytelemetry", "alerts", "list"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=env)
    assert process.stdout is not None
    process.stdout.close()  # as `| head` does once it has its lines; here before the first one
    _, err = process.communicate(timeout=120)
    assert (process.returncode, err.decode()) == (141, "")
