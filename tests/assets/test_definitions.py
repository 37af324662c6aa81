"""The `Definitions` object, as `dagster definitions validate` sees it: every job resolves, on the
partitions of its assets, and the whole repository validates."""

from __future__ import annotations

from forecast_assets.definitions import defs
from forecast_assets.partitions import RETRAIN_MONTHS, TRADING_DAYS

JOBS = ("ingest_job", "evaluation_job", "retrain_job", "nightly_job", "forecast_job")


def test_definitions_load_and_every_job_resolves():
    for name in JOBS:
        job = defs.resolve_job_def(name)
        assert job.name == name
    assert {s.name for s in defs.schedules} >= {"nightly_after_close", "monthly_retrain"}
    assert defs.resolve_job_def("nightly_job").partitions_def == TRADING_DAYS
    assert defs.resolve_job_def("retrain_job").partitions_def == RETRAIN_MONTHS
    # The whole repository (assets, checks, jobs, schedules, resources) validates as the CLI would.
    repo = defs.get_repository_def()
    assert set(JOBS) <= set(repo.job_names)
    assert {"raw_prices", "daily_forecasts", "lstm_model"} <= {
        k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()
    }
