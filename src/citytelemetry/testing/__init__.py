"""Fakes for tests and benchmarks, written once (as structlog ships ``structlog.testing``).

They live in the package rather than under tests/ so that bench/ can use them too, and so that mypy
strict checks them against the protocols they stand in for (``contracts.Delivery``,
``contracts.LineWriter``, ``sink.spool.FileOps``): a protocol change breaks the fake at type-check time,
not in a confusing test failure. Nothing in the pipeline imports this package.

    NeverSettled        a Delivery for code that must never settle (validation)
    CountingDelivery    a Delivery that counts settles
    CapturingWriter     a LineWriter that keeps every batch and can be down, refuse lines, or refuse size
    DroppingWriter      a LineWriter that only counts (benchmarks)
    MemoryFileOps       an in-memory spool filesystem with injected faults and crashes (``filesystem.py``)
    wait_until          a bounded wait for a condition, instead of a fixed sleep (and ``wait_until_sync``)
"""

from citytelemetry.testing.fakes import CapturingWriter, CountingDelivery, DroppingWriter, NeverSettled
from citytelemetry.testing.filesystem import Fault, MemoryFileOps
from citytelemetry.testing.waiting import wait_until, wait_until_sync

__all__ = ["CapturingWriter", "CountingDelivery", "DroppingWriter", "Fault", "MemoryFileOps", "NeverSettled",
           "wait_until", "wait_until_sync"]
