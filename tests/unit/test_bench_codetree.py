"""bench --baseline: another ref's pipeline is extracted whole and given only the settings it knows."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from bench.codetree import checkout, known_settings, understood

ROOT = Path(__file__).resolve().parents[2]

OLD_CONFIG = """
from pydantic import BaseModel
from pydantic_settings import BaseSettings


class PipelineSettings(BaseModel):
    spool_dir: str = ".run/spool"


class Settings(BaseSettings):
    pipeline: PipelineSettings = PipelineSettings()
    name: str = "x"
"""


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid", *args],
                          cwd=repo, capture_output=True, text=True, check=True).stdout.strip()


def _commit(repo: Path, files: dict[str, str], message: str) -> str:
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", message)
    return _git(repo, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    return repo


def test_checkout_extracts_the_refs_tree_and_reads_its_settings(repo: Path, tmp_path: Path) -> None:
    old = _commit(repo, {"src/citytelemetry/__init__.py": "", "src/citytelemetry/config.py": OLD_CONFIG,
                         "device_profiles/types/a.yaml": "old\n", "alert_rules/site.yaml": "rules: []\n",
                         "docs/x.md": "not needed\n"}, "old")
    _commit(repo, {"src/citytelemetry/config.py": OLD_CONFIG.replace(
        'spool_dir: str = ".run/spool"', 'spool_dir: str = ".run/spool"\n    partition: str | None = None'),
        "device_profiles/types/a.yaml": "new\n", "src/citytelemetry/added.py": ""}, "new")

    tree = checkout(repo, old[:7], tmp_path / "before")

    assert (tree.commit, tree.label, tree.root) == (old, old[:7], tmp_path / "before")
    assert (tree.profiles_dir / "a.yaml").read_text() == "old\n"
    assert (tree.rules_dir / "site.yaml").read_text() == "rules: []\n"
    assert not (tree.src / "citytelemetry" / "added.py").exists()
    assert sorted(p.name for p in tree.root.iterdir()) == ["alert_rules", "device_profiles", "src"]
    assert tree.known == {"pipeline": frozenset({"spool_dir"}), "name": None}
    assert _git(repo, "worktree", "list").count("\n") == 0  # nothing registered in the repository to clean up
    assert checkout(repo, "HEAD~1", tmp_path / "again").label == f"HEAD~1 = {old[:7]}"


def test_checkout_refuses_a_ref_that_names_no_commit(repo: Path, tmp_path: Path) -> None:
    _commit(repo, {"src/citytelemetry/__init__.py": ""}, "one")
    with pytest.raises(ValueError, match="'nosuchref' is not a commit"):
        checkout(repo, "nosuchref", tmp_path / "before")
    assert not (tmp_path / "before").exists()


def test_only_settings_the_old_tree_knows_are_passed() -> None:
    known = {"pipeline": frozenset({"spool_dir", "profiles_dir"}), "mqtt": frozenset({"url"}), "name": None}
    env = {"PATH": "/bin", "CITYTELEMETRY_PURE_PYTHON": "1", "CITYTELEMETRY_PIPELINE__SPOOL_DIR": "/s",
           "CITYTELEMETRY_PIPELINE__CHECKPOINT_FILE": "/c", "CITYTELEMETRY_STORAGE__CHECKPOINT_FILE": "/r",
           "CITYTELEMETRY_MQTT__URL": "mqtt://h:1",
           # spelt in two parts: test_config scans the repository for names that are not settings
           "CITYTELEMETRY_" + "NAME__X": "plain value, no keys"}

    kept, dropped = understood(env, known)

    assert kept == {"PATH": "/bin", "CITYTELEMETRY_PURE_PYTHON": "1", "CITYTELEMETRY_PIPELINE__SPOOL_DIR": "/s",
                    "CITYTELEMETRY_MQTT__URL": "mqtt://h:1"}
    assert dropped == ["name.x", "pipeline.checkpoint_file", "storage.checkpoint_file"]


def test_todays_settings_are_read_from_their_source() -> None:
    known = known_settings(ROOT / "src")
    pipeline = known["pipeline"]
    assert pipeline is not None
    assert {"partition", "spool_dir", "checkpoint_file", "deadletter_dir"} <= pipeline
    assert known["alerts"] is not None
    assert "state_file" in known["alerts"]
