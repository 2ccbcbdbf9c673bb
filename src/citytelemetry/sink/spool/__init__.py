"""The write-ahead spool: readings are acknowledged once fsync'd here, then drained to InfluxDB.

    SpooledSink.put -> Spool (group commit, fsync) -> ack -> feeder -> BufferedSink -> InfluxDB
"""

from citytelemetry.sink.spool.errors import SpoolError, SpoolWriteError
from citytelemetry.sink.spool.fileops import FileOps, OsFileOps
from citytelemetry.sink.spool.recovery import SeqRange, SpoolLoss
from citytelemetry.sink.spool.sink import SpooledSink
from citytelemetry.sink.spool.wal import Spool, SpoolStats

__all__ = ["FileOps", "OsFileOps", "SeqRange", "Spool", "SpoolError", "SpoolLoss", "SpoolStats", "SpoolWriteError",
           "SpooledSink"]
