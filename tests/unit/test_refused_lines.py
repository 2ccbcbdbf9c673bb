"""Lines InfluxDB refused although we built them: counted by kind, kept on disk, dead-lettered once."""

from __future__ import annotations

from pathlib import Path

from citytelemetry.config import PipelineSettings, Settings
from citytelemetry.deadletters.entries import read_entries
from citytelemetry.run import build_pipeline
from citytelemetry.run.refused import RefusedLines, record_kind

from .catalog_fixture import make_catalog
from .line_ranges import assert_in_range


class NoWriter:
    async def prepare(self) -> None:
        return None

    async def write(self, lines: object) -> None:
        raise AssertionError(f"nothing is written here: {lines!r}")

    async def aclose(self) -> None:
        return None


def test_record_kinds() -> None:
    assert [record_kind(line) for line in (
        b"ct_rejects,reason=x count=1i 1", b"ct_pipeline,instance=a x=1i 1", b"ct_pipeline_rejects count=1i 1",
        b"ct_completeness,device=d received=1i 1", b'ct_alerts,alertname=a summary="s" 1',
        b"tunnel_multigas,device=d o2=1.0 1", b"ct_device_status,device=d online=true 1",
        b"ct_rejectsx f=1i 1")] == ["deadletter", "selfmetrics", "selfmetrics", "completeness", "alerts",
                                    "reading", "reading", "reading"]


def test_a_refused_line_is_counted_kept_and_dead_lettered_unless_it_is_a_dead_letter(tmp_path: Path) -> None:
    settings = Settings(pipeline=PipelineSettings(spool_dir=None, deadletter_dir=tmp_path))
    pipeline = build_pipeline(settings, make_catalog(), writer=NoWriter())
    assert pipeline.deadletter_store is not None
    pipeline.deadletter_store.open()
    refused = RefusedLines(pipeline.handler, pipeline.stats, pipeline.deadletter_store)
    put: list[bytes] = []

    class Sink:
        def put_nowait(self, lines: list[bytes]) -> None:
            put.extend(lines)

    refused.sink = Sink()  # type: ignore[assignment]
    refused(b"ct_rejects,reason=x seq=1i 1", "field type conflict")
    refused(b"tunnel_multigas,device=d o2=1i 1", "field type conflict: o2")
    pipeline.deadletter_store.close()
    assert dict(pipeline.stats.records_refused) == {"deadletter": 1, "reading": 1}
    assert dict(pipeline.stats.rejections) == {"write_rejected": 1}
    [dead] = put
    point = assert_in_range(dead)
    assert point.tags["reason"] == "write_rejected"
    assert [(e.kind, e.record, e.line) for e in read_entries(tmp_path)] == [
        ("line", "deadletter", "ct_rejects,reason=x seq=1i 1"), ("line", "reading", "tunnel_multigas,device=d o2=1i 1")]
