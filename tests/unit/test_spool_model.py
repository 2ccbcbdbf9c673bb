"""The spool against a model of what must be readable, with faults as inputs (Vector's disk_v2 model tests).

The model is a dict of acknowledged records (id -> lines) and the drained ids. Hypothesis drives random
sequences of puts (with short writes, ENOSPC and EIO injected into the in-memory filesystem), drains,
checkpoints, crashes (unsynced bytes dropped) and damage (a cut tail, a lost segment). After every step
the spool must read back exactly the acknowledged, undrained records, in order, and after damage report
exactly the acknowledged records it can prove lost.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from citytelemetry.sink.backoff import Backoff
from citytelemetry.sink.spool import Spool
from citytelemetry.sink.spool import records as spool_records
from citytelemetry.testing import Fault, MemoryFileOps

DIR = Path("/spool")
FAULTS = st.sampled_from([("write", Fault.SHORT), ("write", Fault.ENOSPC), ("write", Fault.EIO),
                          ("sync", Fault.EIO), ("open_append", Fault.EIO)])


class SpoolMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.fs = MemoryFileOps()
        self.acked: dict[int, list[bytes]] = {}  # acknowledged, not known drained durably
        self.drained = 0  # marked drained in this process
        self.checkpointed = 0  # drained, and the ledger says so
        self.committed_mark = 0  # the ledger's committed id
        self.readings = 0
        self.spool, self.task = self._open()

    def _open(self) -> tuple[Spool, asyncio.Task[None]]:
        spool = Spool(DIR, max_bytes=1 << 30, segment_bytes=300, ops=self.fs,
                      backoff=Backoff(base_s=0.0005, cap_s=0.001))
        spool.open()
        self.committed_mark = spool.next_id - 1  # open records the recovered truth in the ledger
        return spool, self.loop.create_task(spool.run())

    def _stop(self) -> None:
        self.task.cancel()
        self.loop.run_until_complete(asyncio.gather(self.task, return_exceptions=True))
        self.spool.release()

    def _restart(self) -> None:
        self.spool, self.task = self._open()
        self.drained = self.checkpointed
        self.acked = {i: lines for i, lines in self.acked.items() if i > self.checkpointed}

    def teardown(self) -> None:
        self._stop()
        self.loop.close()

    @rule(sizes=st.lists(st.integers(1, 4), min_size=1, max_size=6), faults=st.lists(FAULTS, max_size=3))
    def put(self, sizes: list[int], faults: list[tuple[str, Fault]]) -> None:
        for operation, fault in faults:
            self.fs.inject(operation, fault)
        acks: list[int] = []
        first = self.spool.next_id
        batch = []
        for n, size in enumerate(sizes):
            lines = []
            for _ in range(size):
                self.readings += 1
                lines.append(f"gas,device=d{self.readings % 3} o2=1.0,seq={self.readings}i {self.readings}".encode())
            batch.append(lines)
            self.spool.submit(lines, lambda n=n: acks.append(n))
        self.loop.run_until_complete(asyncio.wait_for(self.spool.wait_idle(), 10))
        assert acks == list(range(len(sizes)))  # each acknowledged once, in order, only when durable
        self.acked.update({first + n: lines for n, lines in enumerate(batch)})
        assert self.spool.stats.last_error == ""  # a fault not met yet (no rotation) stays queued

    @rule(count=st.integers(1, 8))
    def drain(self, count: int) -> None:
        for record_id in sorted(i for i in self.acked if i > self.drained)[:count]:
            self.spool.mark_drained(record_id)
            self.drained = record_id

    @rule()
    def checkpoint(self) -> None:
        self.spool.checkpoint()
        self.checkpointed = self.drained
        self.committed_mark = self.spool.next_id - 1

    @rule()
    def crash(self) -> None:
        self._stop()
        self.fs.crash()
        self._restart()
        assert self.spool.loss is None  # a crash only drops what was never acknowledged
        assert self.spool.next_id > max([*self.acked, self.checkpointed])

    @precondition(lambda self: bool(spool_records.segments(self.fs, DIR)))
    @rule(count=st.integers(1, 3))
    def cut_tail(self, count: int) -> None:
        """Damage from outside: the newest segment loses its last records."""
        self._stop()
        newest = spool_records.segments(self.fs, DIR)[-1]
        found = list(spool_records.scan(self.fs.read_bytes(newest)))
        keep = found[:-count]
        self.fs.cut(newest, keep[-1][0] if keep else 0)
        self._expect_loss([r.id for _, r in found[len(keep):]], provable_below=self.committed_mark)

    @precondition(lambda self: len(spool_records.segments(self.fs, DIR)) >= 3)
    @rule(data=st.data())
    def lose_segment(self, data: st.DataObject) -> None:
        """Damage from outside: a segment other than the newest is deleted."""
        self._stop()
        paths = spool_records.segments(self.fs, DIR)
        victim = data.draw(st.sampled_from(paths[:-1]))
        ids = [r.id for _, r in spool_records.scan(self.fs.read_bytes(victim))]
        self.fs.remove(victim)
        self._expect_loss(ids, provable_below=None)

    def _expect_loss(self, gone: list[int], provable_below: int | None) -> None:
        self._restart()
        lost = [i for i in gone if i > self.checkpointed and (provable_below is None or i <= provable_below)]
        if lost:
            assert self.spool.loss is not None
            assert self.spool.loss.records == len(lost)
            assert self.spool.stats.records_lost == len(lost)
        else:
            assert self.spool.loss is None
        for record_id in gone:  # beyond the committed mark: gone without proof (ledger.py says why)
            self.acked.pop(record_id, None)

    @invariant()
    def reads_back_exactly_what_was_acknowledged(self) -> None:
        expected = [(i, self.acked[i]) for i in sorted(self.acked) if i > self.drained]
        reader = self.spool.reader()
        try:
            found = self.spool.read_range(reader, self.drained + 1, max_lines=1 << 30)
        finally:
            reader.close()
        assert [(r.id, r.lines) for r in found] == expected
        assert self.spool.stats.depth_records == len(expected)


SpoolMachine.TestCase.settings = settings(max_examples=25, stateful_step_count=20, deadline=None,
                                          suppress_health_check=[HealthCheck.too_slow])
test_spool_model = SpoolMachine.TestCase
