"""Maintenance (`warehouse.maintenance`, the `warehouse_maintenance` asset): on DuckLake, many small
commits leave many small files and snapshots; maintenance merges the files, expires the snapshots
older than its window and deletes the files nothing references, and no row changes. On the DuckDB
file it is a checkpoint. The DuckLake cases run in .venv-ducklake."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import dagster as dg
import pytest

from forecast_assets.assets.maintenance import MAINTENANCE_CRON, maintenance_job, maintenance_schedule
from forecast_assets.assets.maintenance import warehouse_maintenance as asset
from forecast_assets.resources import WarehouseResource
from tests.support.lake import KINDS, new_lake, requires_ducklake
from tests.support.warehouse import prices
from warehouse import connect, transaction
from warehouse.maintenance import maintain

TABLES = ("raw_prices", "forecasts")


def contents(path: Path) -> str:
    with connect(path, read_only=True) as con:
        rows = [con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in TABLES]
    return hashlib.sha256(repr(rows).encode()).hexdigest()


def small_commits(path: Path, n: int) -> None:
    """`n` nights of 20 tickers: each night one commit of new rows, one re-run replacing them."""
    tickers = tuple(f"T{i:02d}" for i in range(20))
    for night in range(n):
        frame = prices(tickers, days=1).with_columns(date=dt.date(2024, 1, 2) + dt.timedelta(days=night))
        for version in (0, 1):
            with transaction(path) as w:
                w.replace(
                    "raw_prices", frame.with_columns(close=100.0 + version), "date = ?", [frame["date"][0]]
                )


@requires_ducklake
@pytest.mark.parametrize("kind", KINDS)
def test_maintenance_merges_small_files_and_expires_snapshots_without_changing_a_row(tmp_path, kind):
    path = new_lake(tmp_path / "lake", kind)
    small_commits(path, 8)
    before = contents(path)
    data = Path(tmp_path / "lake" / "data")
    files_before = len(list(data.rglob("*.parquet")))

    kept = maintain(path)  # the default window keeps this week's snapshots and files
    assert kept["snapshots_expired"] == 0 and kept["files_deleted"] == 0
    assert kept["after"]["data_files"] < kept["before"]["data_files"]  # merged, still one snapshot each
    assert contents(path) == before

    done = maintain(path, keep=dt.timedelta(0))
    assert done["after"]["snapshots"] == 1 and done["snapshots_expired"] > 12
    assert done["after"]["data_files"] <= 2 and done["after"]["delete_files"] == 0, done
    assert contents(path) == before
    assert len(list(data.rglob("*.parquet"))) < files_before / 4, (files_before, done)
    with transaction(path) as w:  # the lake goes on as before
        w.replace("raw_prices", prices(("NEW",)), "FALSE")
    assert contents(path) != before


def test_the_asset_checkpoints_a_duckdb_file_and_its_schedule_is_weekly(tmp_path):
    path = tmp_path / "w.duckdb"
    small_commits(path, 2)
    before = contents(path)
    result = dg.materialize([asset], resources={"warehouse": WarehouseResource(path=str(path))})
    assert result.success and contents(path) == before
    [event] = result.get_asset_materialization_events()
    assert event.materialization.metadata["backend"].value == "duckdb"
    schedule = maintenance_schedule(maintenance_job(), "XNYS")
    assert schedule.cron_schedule == MAINTENANCE_CRON and schedule.execution_timezone == "America/New_York"


@requires_ducklake
def test_the_asset_on_a_lake_reports_what_it_did(tmp_path):
    path = new_lake(tmp_path / "lake", "sqlite")
    small_commits(path, 3)
    result = dg.materialize(
        [asset],
        resources={"warehouse": WarehouseResource(path=str(path))},
        run_config={"ops": {"warehouse_maintenance": {"config": {"keep_days": 0}}}},
    )
    assert result.success
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["backend"].value == "ducklake" and metadata["snapshots_after"].value == 1
