"""Build the storage parts from the settings: the InfluxQL reader, a writer per tier, the rollups."""

from __future__ import annotations

from citytelemetry.config import InfluxSettings, Settings
from citytelemetry.contracts import LineWriter, Sink
from citytelemetry.profiles import Catalog
from citytelemetry.sink.factory import make_writer
from citytelemetry.storage.query import InfluxQL
from citytelemetry.storage.retention import raw_policy
from citytelemetry.storage.rollup import Rollups
from citytelemetry.storage.schema import rollup_schema
from citytelemetry.storage.task import RollupTask, written_barrier
from citytelemetry.storage.tiers import Tier, rollup_tiers, tiers_by_device
from citytelemetry.storage.windows import DirtyWindows


def reader(settings: Settings) -> InfluxQL:
    """The read side: ``storage.reader_*`` (least privilege: READ), else the pipeline's own account."""
    influx, storage = settings.influx, settings.storage
    username = storage.reader_username or influx.username
    secret = storage.reader_password or influx.password
    password = secret.get_secret_value() if secret else None
    token = None
    if influx.api == "v2":  # the 1.x compatibility API takes the token as ``Token``
        token = password or (influx.token.get_secret_value() if influx.token else None)
    return InfluxQL(influx.url, influx.database, username=username, password=password, token=token,
                    timeout_s=max(30.0, influx.timeout_s), ca_file=influx.ca_file)


def tier_writer(influx: InfluxSettings, tier: Tier) -> LineWriter:
    """The pipeline's writer aimed at the tier: 1.x its retention policy, 2.x the bucket ``<bucket>_<tier>``."""
    if influx.api == "v2":
        return make_writer(influx.model_copy(update={"bucket": f"{influx.bucket}_{tier.name}"}))
    return make_writer(influx.model_copy(update={"retention_policy": tier.name, "create_database": False}))


def build_rollups(settings: Settings, catalog: Catalog) -> Rollups:
    tiers = rollup_tiers(settings.storage)
    return Rollups(rollup_schema(catalog), tiers, reader(settings),
                   {t.name: tier_writer(settings.influx, t) for t in tiers}, raw_rp=raw_policy(settings.influx))


async def backfill(rollups: Rollups, start_ms: int, end_ms: int) -> int:
    """Every tier of every measurement over [start, end): the bench's and ``storage backfill``'s loop."""
    written = 0
    for tier in rollups.tiers:
        for measurement in rollups.measurements:
            written += await rollups.backfill(tier, measurement, start_ms, end_ms)
    return written




def build_rollup_task(settings: Settings, catalog: Catalog, sink: Sink) -> RollupTask:
    """The pipeline's rollup task over ``sink`` (whose written lines it waits for). No I/O here."""
    storage = settings.storage
    rollups = build_rollups(settings, catalog)
    windows = DirtyWindows(tiers_by_device(storage, catalog), rollups.measurements)
    return RollupTask(rollups, windows, written_barrier(sink), interval_s=storage.interval_s, grace_s=storage.grace_s,
                      checkpoint=storage.checkpoint_file)
