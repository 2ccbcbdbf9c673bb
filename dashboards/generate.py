"""Regenerate the committed dashboards in dashboards/generated/ (or check them with --check).

    .venv/bin/python dashboards/generate.py            # rewrite dashboards/generated/*.json
    .venv/bin/python dashboards/generate.py --check    # exit 1 if they differ from what the profiles give

Built from device_profiles/ and dashboards/kpi.toml, exactly as `citytelemetry dashboards build` does.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from citytelemetry.dashboards import build_dashboards, load_kpi_settings
from citytelemetry.dashboards.model import dump
from citytelemetry.profiles import load_catalog

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "dashboards" / "generated"


def expected() -> dict[str, str]:
    catalog = load_catalog(ROOT / "device_profiles" / "types", ROOT / "device_profiles" / "inventory")
    kpi = load_kpi_settings(ROOT / "dashboards" / "kpi.toml")
    return {f"{uid}.json": dump(data) for uid, data in build_dashboards(catalog, kpi).items()}


def stale() -> list[str]:
    files = expected()
    present = {p.name for p in OUT.glob("*.json")}
    changed = [n for n, text in files.items() if not (OUT / n).is_file() or (OUT / n).read_text("utf-8") != text]
    return sorted(changed + sorted(present - set(files)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only check; exit 1 when stale")
    if parser.parse_args().check:
        names = stale()
        for name in names:
            sys.stdout.write(f"stale: dashboards/generated/{name} (run dashboards/generate.py)\n")
        return 1 if names else 0
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.json"):
        old.unlink()
    for name, text in expected().items():
        (OUT / name).write_text(text, encoding="utf-8")
        sys.stdout.write(f"wrote dashboards/generated/{name}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
