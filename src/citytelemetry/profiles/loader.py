"""Load ``device_profiles/``: every file is validated and every error reported with its file and key.

Loading is all or nothing: if any file is broken, ``load_catalog`` raises ``ProfileError`` listing
every problem found, and nothing is half-loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from citytelemetry.profiles.catalog import Catalog, RegisteredDevice, device_tags
from citytelemetry.profiles.models import DeviceProfile, InventoryFile

M = TypeVar("M", bound=BaseModel)
ALL = "*"  # in the set of broken profiles: none could be loaded


class ProfileError(Exception):
    """One or more profile or inventory files are invalid; ``problems`` holds 'file: key: message' lines."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"{len(problems)} problem(s) in device profiles:\n  " + "\n  ".join(problems))


# libyaml's parser when PyYAML was built with it: the inventory loads about 5x faster.
_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _UniqueKeyLoader(_BaseLoader):  # type: ignore[misc,valid-type]
    """PyYAML keeps the last of two equal keys; in a hand-edited profile that hides a mistake."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        keys: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in keys:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark)
            keys.add(key)
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return mapping


def _read_yaml(path: Path, problems: list[str]) -> Any:
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        problems.append(f"{path}: cannot read: {exc}".replace("\n", " "))
        return None


def _parse(model: type[M], path: Path, problems: list[str]) -> M | None:
    before = len(problems)
    data = _read_yaml(path, problems)
    if data is None:
        if len(problems) == before:
            problems.append(f"{path}: file is empty")
        return None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            key = ".".join(str(part) for part in err["loc"]) or "(top level)"
            problems.append(f"{path}: {key}: {err['msg']}")
        return None


def _yaml_files(directory: Path, problems: list[str]) -> list[Path]:
    if not directory.is_dir():
        problems.append(f"{directory}: not a directory")
        return []
    files = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])
    if not files:
        problems.append(f"{directory}: no .yaml files")
    return files


def _load_profiles(directory: Path, problems: list[str], broken: set[str]) -> dict[str, DeviceProfile]:
    """Load every profile; names of files that failed go to ``broken`` (their devices are not re-reported)."""
    profiles: dict[str, DeviceProfile] = {}
    origin: dict[str, Path] = {}
    for path in _yaml_files(directory, problems):
        profile = _parse(DeviceProfile, path, problems)
        if profile is None:
            broken.add(path.stem)
            continue
        if profile.type != path.stem:
            problems.append(f"{path}: type: '{profile.type}' must match the file name '{path.stem}'")
            continue
        if profile.type in profiles:
            problems.append(f"{path}: type: '{profile.type}' is already defined in {origin[profile.type]}")
            continue
        profiles[profile.type] = profile
        origin[profile.type] = path
    return profiles


def _load_devices(directory: Path, profiles: dict[str, DeviceProfile], problems: list[str],
                  broken: set[str]) -> dict[str, RegisteredDevice]:
    """Register every device; a type without a profile is one line per file, not one per device.

    With no profile at all (``broken`` holds ``ALL``), only the inventory's own structure is checked.
    """
    devices: dict[str, RegisteredDevice] = {}
    origin: dict[str, str] = {}
    for path in _yaml_files(directory, problems):
        inventory = _parse(InventoryFile, path, problems)
        if inventory is None or ALL in broken:
            continue
        untyped: dict[str, list[int]] = {}  # type -> indexes of its devices
        for index, device in enumerate(inventory.devices):
            key = f"{path}: devices.{index}"
            profile = profiles.get(device.type)
            if profile is None:
                untyped.setdefault(device.type, []).append(index)
                continue
            if profile.system is not inventory.system:
                problems.append(f"{key}.type: '{device.type}' belongs to system '{profile.system}', "
                                f"not '{inventory.system}'")
                continue
            if device.id in devices:
                problems.append(f"{key}.id: duplicate device id '{device.id}' (first in {origin[device.id]})")
                continue
            site = device.site or inventory.site
            location: dict[str, str] = {str(key): value for key, value in device.location.items()}
            devices[device.id] = RegisteredDevice(
                id=device.id, site=site, system=inventory.system, profile=profile, location=location,
                tags=device_tags(site, inventory.system, profile, device.id, location),
            )
            origin[device.id] = key
        problems.extend(_untyped_problems(path, untyped, broken))
    return devices


def _untyped_problems(path: Path, untyped: dict[str, list[int]], broken: set[str]) -> list[str]:
    lines = []
    for device_type, indexes in untyped.items():
        others = f" (and {len(indexes) - 1} more devices of this type)" if len(indexes) > 1 else ""
        if device_type in broken:
            lines.append(f"{path}: devices of type '{device_type}' not checked: its profile is invalid")
        else:
            lines.append(f"{path}: devices.{indexes[0]}.type: unknown device type '{device_type}'{others}")
    return lines


def load_catalog(profiles_dir: Path, inventory_dir: Path) -> Catalog:
    """Load and cross-check all profiles and inventory files; raise ``ProfileError`` listing every problem."""
    problems: list[str] = []
    broken: set[str] = set()
    profiles = _load_profiles(profiles_dir, problems, broken)
    if not profiles:  # the root cause is already listed; every device would repeat it
        broken.add(ALL)
        problems.append(f"{inventory_dir}: devices not checked against profiles: none loaded from {profiles_dir}")
    devices = _load_devices(inventory_dir, profiles, problems, broken)
    if problems:
        raise ProfileError(problems)
    return Catalog(profiles=profiles, devices=devices)
