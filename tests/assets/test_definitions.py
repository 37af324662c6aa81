"""The `Definitions` object, as `dagster definitions validate` sees it, built by `build_defs` from a
configuration file: every job resolves, on the partitions of that file, the resources point at the
same file, the whole repository validates, and the module-level `defs` (what `dagster dev` loads)
is built from $FORECAST_CONFIG and $FORECAST_WAREHOUSE."""

from __future__ import annotations

import importlib

import pytest

from forecast_assets import definitions
from forecast_assets.definitions import build_defs, source_last_date
from forecast_assets.partitions import retrain_partitions, trading_day_partitions
from forecast_core.config import load_config
from tests.support.config import write_config

JOBS = ("ingest_job", "evaluation_job", "retrain_job", "nightly_job", "forecast_job")


def test_definitions_load_and_every_job_resolves(tiny_defs):
    defs = tiny_defs
    cfg = load_config(defs.resources["pipeline"].config_file)
    for name in JOBS:
        job = defs.resolve_job_def(name)
        assert job.name == name
    assert {s.name for s in defs.schedules} >= {"nightly_after_close", "monthly_retrain"}
    end = source_last_date(cfg)  # None on a live source; the sample's last date on the sample
    assert defs.resolve_job_def("nightly_job").partitions_def == trading_day_partitions(
        cfg.source.start_date, cfg.calendar, end
    )
    assert defs.resolve_job_def("retrain_job").partitions_def == retrain_partitions(
        cfg.source.start_date, cfg.calendar, end
    )
    # The whole repository (assets, checks, jobs, schedules, resources) validates as the CLI would.
    repo = defs.get_repository_def()
    assert set(JOBS) <= set(repo.job_names)
    assert {"raw_prices", "daily_forecasts", "lstm_model"} <= {
        k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()
    }


def test_partitions_and_resources_come_from_the_same_file(tmp_path):
    config = write_config(tmp_path / "later.toml", {"source": {"start_date": "2015-06-01"}})
    warehouse = tmp_path / "w.duckdb"
    defs = build_defs(str(config), str(warehouse))
    assert defs.resources["pipeline"].config_file == str(config)
    assert defs.resources["warehouse"].path == str(warehouse)
    for name in ("ingest_job", "nightly_job", "forecast_job", "decision_job", "retrain_job"):
        assert defs.resolve_job_def(name).partitions_def.get_first_partition_key() == "2015-06-01", name


def test_module_defs_are_built_from_the_environment(tmp_path, monkeypatch: pytest.MonkeyPatch):
    config = write_config(tmp_path / "env.toml", {"source": {"start_date": "2016-03-01"}})
    monkeypatch.setenv("FORECAST_CONFIG", str(config))
    monkeypatch.setenv("FORECAST_WAREHOUSE", str(tmp_path / "w.duckdb"))
    try:
        defs = importlib.reload(definitions).defs
        assert defs.resources["pipeline"].config_file == str(config)
        assert defs.resources["warehouse"].path == str(tmp_path / "w.duckdb")
        assert defs.resolve_job_def("nightly_job").partitions_def.get_first_partition_key() == "2016-03-01"
    finally:
        monkeypatch.undo()
        importlib.reload(definitions)  # back to the definitions of the environment the suite runs in
