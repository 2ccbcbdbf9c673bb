"""The write-ahead spool: readings are acknowledged once fsync'd here, then drained to InfluxDB.

    SpooledSink.put -> Spool (group commit, fsync) -> ack -> feeder -> BufferedSink -> InfluxDB
"""

from citytelemetry.sink.spool.sink import SpooledSink
from citytelemetry.sink.spool.wal import Spool, SpoolError

__all__ = ["Spool", "SpoolError", "SpooledSink"]
