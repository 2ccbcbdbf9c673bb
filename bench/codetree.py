"""The pipeline's code at another git ref, for a before/after comparison in one run (``--baseline REF``).

The ref's ``src/``, ``device_profiles/`` and ``alert_rules/`` are extracted with ``git archive`` into the
run's temporary directory: no worktree is registered in the repository, so nothing is left to prune if the
run is killed, and removing the run directory removes the tree. The old code runs with its own profiles
and rules (an older loader may refuse keys added since) on the same messages.

An older ``Settings`` may not know a setting the bench passes today: inside a known section pydantic
refuses an unknown key (``extra = "forbid"``), and an unknown section is ignored. So the old tree is asked
which settings it has, and only those are passed; what it lacks keeps its default, relative to the
process's own working directory (one per process, in the run directory).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ENV_PREFIX = "CITYTELEMETRY_"
TREE_PARTS = ("src", "device_profiles", "alert_rules")

# Run in the old tree's interpreter path: its settings, as {section: [keys]} (None for a plain value).
_LIST_SETTINGS = """
import json
from pydantic import BaseModel
from citytelemetry.config import Settings
out = {}
for name, field in Settings.model_fields.items():
    kind = field.annotation
    out[name] = sorted(kind.model_fields) if isinstance(kind, type) and issubclass(kind, BaseModel) else None
print(json.dumps(out))
"""


@dataclass(frozen=True, slots=True)
class CodeTree:
    ref: str  # as given, e.g. "7c652b0" or "main~3"
    commit: str  # the full hash it resolved to
    root: Path
    known: Mapping[str, frozenset[str] | None]  # the tree's settings: section -> keys (None: not a section)

    @property
    def src(self) -> Path:
        return self.root / "src"

    @property
    def profiles_dir(self) -> Path:
        return self.root / "device_profiles" / "types"

    @property
    def inventory_dir(self) -> Path:
        return self.root / "device_profiles" / "inventory"

    @property
    def rules_dir(self) -> Path:
        return self.root / "alert_rules"

    @property
    def label(self) -> str:
        return self.commit[:7] if self.ref == self.commit[:len(self.ref)] else f"{self.ref} = {self.commit[:7]}"

    def command(self) -> list[str]:
        # -m, not the venv's console script: that script imports the entry point of today's layout.
        return [sys.executable, "-m", "citytelemetry", "run"]

    def env(self, env: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
        """``env`` for a process of this tree: its ``src`` first on the path, and only the settings it knows.
        Returns the environment and the setting names left out."""
        kept, dropped = understood(env, self.known)
        kept["PYTHONPATH"] = str(self.src)  # alone: today's src (the worktree's) must not shadow it
        return kept, dropped


def understood(env: Mapping[str, str], known: Mapping[str, frozenset[str] | None],
               prefix: str = ENV_PREFIX) -> tuple[dict[str, str], list[str]]:
    """Split ``env`` into what a ``Settings`` with these ``known`` sections and keys accepts, and the
    ``SECTION__KEY`` settings it does not know (sorted, as ``section.key``). Names without ``__`` are not
    nested settings (``CITYTELEMETRY_PURE_PYTHON``) and are kept, like every name outside the prefix."""
    kept: dict[str, str] = {}
    dropped: list[str] = []
    for name, value in env.items():
        section, sep, key = name.removeprefix(prefix).lower().partition("__")
        if name.startswith(prefix) and sep:
            keys = known.get(section)
            if keys is None or key.split("__", 1)[0] not in keys:
                dropped.append(f"{section}.{key.replace('__', '.')}")
                continue
        kept[name] = value
    return kept, sorted(dropped)


def known_settings(src: Path) -> dict[str, frozenset[str] | None]:
    """Ask the package under ``src`` which settings it has (a subprocess: it is another version of ours)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    env["PYTHONPATH"] = str(src)
    out = subprocess.run([sys.executable, "-c", _LIST_SETTINGS], env=env, cwd=src, capture_output=True,
                         text=True, timeout=120, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"cannot read the settings of {src}: {out.stderr[-2000:]}")
    listed: dict[str, list[str] | None] = json.loads(out.stdout.strip().splitlines()[-1])
    return {name: None if keys is None else frozenset(keys) for name, keys in listed.items()}


def resolve(repo: Path, ref: str) -> str:
    """The full commit hash ``ref`` names in ``repo``; ``ValueError`` if it names none."""
    out = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], cwd=repo,
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise ValueError(f"{ref!r} is not a commit of {repo}")
    return out.stdout.strip()


def extract(repo: Path, commit: str, dest: Path, parts: tuple[str, ...] = TREE_PARTS) -> None:
    """``git archive`` of ``parts`` (those the commit has) at ``commit``, unpacked into ``dest``."""
    listed = subprocess.run(["git", "ls-tree", "--name-only", commit], cwd=repo, capture_output=True, text=True,
                            check=True).stdout.split()
    present = [p for p in parts if p in listed]
    if "src" not in present:
        raise ValueError(f"{commit[:7]} has no src/")
    archive = subprocess.run(["git", "archive", "--format=tar", commit, *present], cwd=repo, capture_output=True,
                             check=True).stdout
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")


def checkout(repo: Path, ref: str, dest: Path) -> CodeTree:
    """The pipeline of ``ref`` under ``dest``, with the settings it knows."""
    commit = resolve(repo, ref)
    extract(repo, commit, dest)
    return CodeTree(ref, commit, dest, known_settings(dest / "src"))
