"""citytelemetry: MQTT -> validation against device profiles -> InfluxDB, with alerting and dashboards.

The package layout follows the data flow:

    ingest/    MQTT source, topic scheme, in-order acknowledgement
    validate/  payload decoding and compiled per-profile validation -> Reading records
    sink/      line protocol, InfluxDB writers, the buffering/retry wrapper, dead letters
    profiles/  device profiles and the district inventory (the single source of truth)
    observability/  self-metrics, /metrics and /healthz
"""

__version__ = "0.1.0"


def _refuse_stale_compiled_modules() -> None:
    """Compiled hot-path modules (scripts/compile_hotpath.py) shadow their sources: refuse to run old code."""
    import hashlib
    import json
    from pathlib import Path

    manifest = Path(__file__).with_name("_compiled.json")
    if not manifest.exists():
        return
    src = Path(__file__).parent.parent
    for name, digest in json.loads(manifest.read_text(encoding="utf-8"))["modules"].items():
        source = src / name
        if source.exists() and hashlib.sha256(source.read_bytes()).hexdigest() != digest:
            raise ImportError(f"{source} changed after it was compiled with mypyc: run scripts/install (it "
                              "recompiles), or scripts/compile_hotpath.py --clean for pure Python")


_refuse_stale_compiled_modules()
