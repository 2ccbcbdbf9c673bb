from __future__ import annotations

import zlib
from pathlib import Path

import orjson
import pytest

from citytelemetry.observability.completeness import CompletenessTracker
from citytelemetry.records import Reason
from citytelemetry.run import checkpoint
from citytelemetry.validate.ratelimit import DeviceRateLimit
from citytelemetry.validate.sequence import SequenceTracker

from .catalog_fixture import make_catalog

DEVICE = "tun-c001-gas1"
T0 = 1_780_000_000_000


def trackers() -> tuple[SequenceTracker, CompletenessTracker, DeviceRateLimit]:
    return SequenceTracker(64), CompletenessTracker(make_catalog()), DeviceRateLimit({DEVICE: 1.0}, burst=10)


def accept(sequences: SequenceTracker, completeness: CompletenessTracker, *seqs: int) -> None:
    for seq in seqs:
        ts = T0 + seq * 1000
        assert sequences.check(DEVICE, seq, ts) is None
        sequences.accept(DEVICE, seq, ts)
        completeness.landed(DEVICE, seq, ts)


def saved_and_restored(path: Path, pending: list[tuple[str, int, int]] | None = None,
                       ) -> tuple[SequenceTracker, CompletenessTracker, DeviceRateLimit]:
    sequences, completeness, rate = trackers()
    accept(sequences, completeness, 1, 2, 3, 5, 8)
    assert rate.allows(DEVICE, 10.0)
    rate.take(DEVICE, 10.0)
    for seq, ts in [(s, t) for _, s, t in pending or []]:
        sequences.accept(DEVICE, seq, ts)  # accepted, not durable: completeness has not counted it
    checkpoint.write(path, checkpoint.encode(checkpoint.snapshot(sequences, completeness, rate, pending or [])))
    document = checkpoint.read(path)
    assert document is not None
    restored = trackers()
    assert checkpoint.restore(document, {DEVICE}, *restored) == 1
    return restored


def test_a_restored_tracker_refuses_what_was_seen_and_takes_what_was_not(tmp_path: Path) -> None:
    sequences, completeness, rate = saved_and_restored(tmp_path / "state.ckpt")
    assert sequences.check(DEVICE, 5, T0 + 5000) == (Reason.DUPLICATE_SEQUENCE, "seq 5 already seen (newest 8)")
    assert sequences.check(DEVICE, 4, T0 + 4000) is None  # a gap, filled late after the restart
    assert sequences.check(DEVICE, 9, T0 + 3000)[0] is Reason.DUPLICATE_TIMESTAMP  # type: ignore[index]
    counts = completeness.devices()[DEVICE]
    assert (counts.total_received, counts.expected) == (5, 8)
    assert rate.tokens(DEVICE) == 9.0
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []  # the temporary file is gone


def test_readings_not_yet_acknowledged_are_left_out_so_their_redelivery_lands(tmp_path: Path) -> None:
    pending = [(DEVICE, 9, T0 + 9000), (DEVICE, 6, T0 + 6000)]
    sequences, completeness, _ = saved_and_restored(tmp_path / "state.ckpt", pending)
    for _, seq, ts in pending:  # redelivered after the crash: not duplicates, not timestamp collisions
        assert sequences.check(DEVICE, seq, ts) is None
    assert sequences.check(DEVICE, 8, T0 + 8000)[0] is Reason.DUPLICATE_SEQUENCE  # type: ignore[index]
    assert completeness.devices()[DEVICE].total_received == 5


def test_unknown_devices_are_dropped_and_damaged_or_foreign_files_ignored(tmp_path: Path) -> None:
    sequences, completeness, rate = trackers()
    accept(sequences, completeness, 1)
    path = tmp_path / "state.ckpt"
    checkpoint.write(path, checkpoint.encode(checkpoint.snapshot(sequences, completeness, rate, [])))
    document = checkpoint.read(path)
    assert document is not None
    empty = trackers()
    assert checkpoint.restore(document, set(), *empty) == 0
    assert empty[1].devices() == {}

    path.write_bytes(path.read_bytes()[:20])  # torn: only the rename protects us, and here we bypass it
    assert checkpoint.read(path) is None
    path.write_bytes(zlib.compress(orjson.dumps({"format": "something-else", "version": 1})))
    assert checkpoint.read(path) is None
    assert checkpoint.read(tmp_path / "missing") is None


@pytest.mark.parametrize("window", [64, 4096])
def test_size_is_bounded_by_the_inventory_and_the_window(tmp_path: Path, window: int) -> None:
    sequences, completeness = SequenceTracker(window), CompletenessTracker(make_catalog())
    for seq in range(0, 100_000, 7):
        sequences.accept(DEVICE, seq, T0 + seq)
    data = checkpoint.encode(checkpoint.snapshot(sequences, completeness, None, []))
    assert len(data) < window // 8 + 2048 + 512


async def test_what_lands_after_the_last_checkpoint_is_replayed_from_the_journal(tmp_path: Path) -> None:
    path = tmp_path / "state.ckpt"
    sequences, completeness, rate = trackers()
    saver = checkpoint.Checkpointer(path, 60, known={DEVICE}, sequences=sequences, completeness=completeness,
                                    rate=rate, pending=[])
    saver.restore()  # nothing yet: journal 0 opens
    accept(sequences, completeness, 1, 2)
    for seq in (1, 2):
        saver.journal.record(DEVICE, seq, T0 + seq * 1000)
    await saver.save()  # checkpoint with 1 and 2; journal 1 from here, journal 0 deleted
    accept(sequences, completeness, 3, 7)
    for seq in (3, 7):
        saver.journal.record(DEVICE, seq, T0 + seq * 1000)
    saver.journal.flush()  # what the source does before the PUBACKs; then: kill -9, no save
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.ckpt", "state.ckpt.journal.1"]

    restored = trackers()
    again = checkpoint.Checkpointer(path, 60, known={DEVICE}, sequences=restored[0], completeness=restored[1],
                                    rate=restored[2], pending=[])
    again.restore()
    assert restored[0].check(DEVICE, 7, T0 + 7000)[0] is Reason.DUPLICATE_SEQUENCE  # type: ignore[index]
    assert restored[0].check(DEVICE, 5, T0 + 5000) is None
    counts = restored[1].devices()[DEVICE]
    assert (counts.total_received, counts.expected, counts.out_of_order) == (4, 7, 0)
    again.close()
    saver.close()


def test_a_batch_handled_but_not_yet_durable_stays_out_of_the_checkpoint_until_it_lands(tmp_path: Path) -> None:
    """The handler's pending ``Landing``s reach the checkpoint as (device, seq, time): what is validated but
    not acknowledged is left out (the broker redelivers it), and counts once it is durable."""
    import time

    from citytelemetry.config import HttpSettings, PipelineSettings, Settings
    from citytelemetry.contracts import InboundMessage
    from citytelemetry.run import build_pipeline
    from citytelemetry.testing import CapturingWriter, CountingDelivery

    path = tmp_path / "state.ckpt"
    settings = Settings(http=HttpSettings(port=0), pipeline=PipelineSettings(spool_dir=None, checkpoint_file=path))
    pipeline = build_pipeline(settings, make_catalog(), writer=CapturingWriter())
    checkpointer = pipeline.checkpointer
    assert checkpointer is not None
    now = time.time_ns() // 1_000_000
    readings = [{"seq": seq, "ts": now - 1000 * (10 - seq), "values": {"o2": 20.9}} for seq in (4, 5, 6)]
    body = orjson.dumps({"device": DEVICE, "readings": readings})
    delivery = CountingDelivery()
    lines, on_durable = pipeline.handler.handle(
        InboundMessage("ct/v1/hunnan/tunnel/tun-c001-gas1/telemetry", body, now, delivery))
    assert len(lines) == 3

    def restored() -> tuple[SequenceTracker, CompletenessTracker]:
        checkpoint.write(path, checkpointer.encode())
        document = checkpoint.read(path)
        assert document is not None
        sequences, completeness, rate = trackers()
        checkpoint.restore(document, {DEVICE}, sequences, completeness, rate)
        return sequences, completeness

    sequences, completeness = restored()
    assert [sequences.check(DEVICE, r["seq"], r["ts"]) for r in readings] == [None, None, None]  # redelivery lands
    assert DEVICE not in completeness.devices()

    on_durable()
    assert (delivery.settled, len(pipeline.handler.pending)) == (1, 0)
    sequences, completeness = restored()
    assert [sequences.check(DEVICE, r["seq"], r["ts"])[0] for r in readings] == [  # type: ignore[index]
        Reason.DUPLICATE_SEQUENCE] * 3
    assert completeness.devices()[DEVICE].total_received == 3
