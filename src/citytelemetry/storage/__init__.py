"""Years of data: retention tiers, rollups computed by the pipeline, the storage plan and export.

    pipeline accepts a reading -> DirtyWindows marks its window(s) -> RollupTask (every interval_s):
    due windows -> barrier (their raw lines are written) -> InfluxQL aggregate -> rollup points

docs/storage.md explains the tiers, the sizing and why rollups are computed this way.
"""
