"""The instance of dagster.yaml (forecast_assets.instance): its storage lives under $DAGSTER_HOME
whatever the current directory, and a range run's per-partition materializations, written in
batches, are what event-by-event writes leave: every partition materialized with its own
metadata, the asset's latest event the range's last partition."""

import shutil
from pathlib import Path

import dagster as dg
import pytest

from forecast_assets.instance import BatchedSqliteEventLogStorage, ForecastSqliteStorage
from forecast_assets.metadata import add_partition_metadata

ROOT = Path(__file__).resolve().parents[2]
DAYS = dg.DailyPartitionsDefinition(start_date="2024-01-01", end_date="2024-03-01")


@dg.asset(partitions_def=DAYS, backfill_policy=dg.BackfillPolicy.single_run())
def numbered(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    keys = context.partition_keys
    add_partition_metadata(
        context, {k: {"dagster/row_count": dg.MetadataValue.int(i)} for i, k in enumerate(keys)}
    )
    context.add_asset_metadata({"run_range": f"{keys[0]}..{keys[-1]}"}, partition_key=keys[-1])
    return dg.MaterializeResult()


@pytest.fixture
def instance(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "7")  # several batches and a partial last one
    monkeypatch.chdir(elsewhere)
    with dg.DagsterInstance.get() as instance:
        yield instance, home, elsewhere


def test_storage_is_under_dagster_home_and_batches_keep_every_partition(instance):
    instance, home, elsewhere = instance
    assert isinstance(instance.event_log_storage, BatchedSqliteEventLogStorage)
    result = dg.materialize(
        [numbered],
        instance=instance,
        tags={
            "dagster/asset_partition_range_start": "2024-01-01",
            "dagster/asset_partition_range_end": "2024-01-31",
        },
    )
    assert result.success
    assert (home / ".dagster_home" / "storage" / "history" / "runs.db").exists()
    assert not list(elsewhere.iterdir())  # nothing written relative to the current directory
    key = dg.AssetKey("numbered")
    assert instance.get_materialized_partitions(key) == {f"2024-01-{d:02d}" for d in range(1, 32)}
    records = instance.fetch_materializations(key, limit=100).records
    by_partition = {r.partition_key: r.asset_materialization.metadata for r in records}
    assert len(by_partition) == 31
    assert [by_partition[f"2024-01-{d:02d}"]["dagster/row_count"].value for d in range(1, 32)] == list(
        range(31)
    )
    assert "run_range" in by_partition["2024-01-31"] and "run_range" not in by_partition["2024-01-01"]
    latest = instance.get_latest_materialization_event(key)
    assert latest.dagster_event.partition == "2024-01-31"


def test_run_workers_get_the_same_storage(instance):
    """The instance reference handed to run workers names this storage class (and its relative
    base_dir, which they resolve against the same $DAGSTER_HOME)."""
    instance, _, _ = instance
    data = instance.get_ref().storage_data
    assert (data.module_name, data.class_name) == ("forecast_assets.instance", ForecastSqliteStorage.__name__)
