"""warehouse_maintenance: the warehouse compacted and its old snapshots expired, weekly.

Registered by `forecast_assets.definitions.build_defs` with `maintenance_job` and the weekly
`maintenance_schedule` (off by default, like every schedule).

It writes no table and changes no row (`warehouse.maintenance.maintain`: on DuckLake, merge small
files, rewrite mostly-deleted ones, expire snapshots older than `keep_days`, delete unreferenced
files; on the DuckDB file, a CHECKPOINT). It takes the `warehouse_write` slot so that it never
competes with the job's writers for the same files (on DuckLake a conflict would be retried anyway).
"""

import datetime as dt

import dagster as dg

from forecast_assets.metadata import OWNERS
from forecast_assets.resources import WarehouseResource
from forecast_core.data import calendar
from warehouse.maintenance import DEFAULT_KEEP, maintain

#: Sundays at 03:00 in the exchange's time zone: no session, no nightly run.
MAINTENANCE_CRON = "0 3 * * 0"


class MaintenanceConfig(dg.Config):
    keep_days: float = DEFAULT_KEEP.days


@dg.asset(
    group_name="maintenance",
    kinds={"duckdb"},
    pool="warehouse_write",
    owners=OWNERS,
    tags={"layer": "maintenance"},
)
def warehouse_maintenance(
    context: dg.AssetExecutionContext, config: MaintenanceConfig, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    """Compaction of small files and expiry of snapshots older than `keep_days` (DuckLake); a
    checkpoint of the DuckDB file."""
    done = maintain(warehouse.resolved_path, dt.timedelta(days=config.keep_days))
    context.log.info(f"warehouse maintenance: {done}")
    metadata: dict = {"backend": done["backend"], "seconds": done["seconds"]}
    if done["backend"] == "ducklake":
        for when in ("before", "after"):
            metadata |= {f"{k}_{when}": v for k, v in done[when].items()}
        metadata |= {
            k: done[k]
            for k in ("merged", "rewritten", "snapshots_expired", "files_deleted", "orphans_deleted")
        }
    return dg.MaterializeResult(metadata=metadata)


def maintenance_job():
    return dg.define_asset_job("maintenance_job", selection=["warehouse_maintenance"])


def maintenance_schedule(job, calendar_code: str) -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(
        name="weekly_warehouse_maintenance",
        job=job,
        cron_schedule=MAINTENANCE_CRON,
        execution_timezone=calendar.timezone(calendar_code),
        default_status=dg.DefaultScheduleStatus.STOPPED,
    )
