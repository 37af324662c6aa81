"""Partitions on the exchange calendar, as `build_defs` makes them from a configuration file: the
session partitions are exactly the NYSE sessions from the configured start date."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from forecast_assets.definitions import build_defs
from forecast_core.data import calendar
from tests.support.config import write_config


def test_trading_day_partitions_are_the_nyse_sessions(tmp_path):
    config = write_config(
        tmp_path / "nyse.toml",
        {"calendar": "XNYS", "source": {"kind": "yfinance", "start_date": "1990-01-02"}},
    )
    trading_days = (
        build_defs(str(config), str(tmp_path / "w.duckdb")).resolve_job_def("ingest_job").partitions_def
    )
    assert not trading_days.has_partition_key("2024-07-04")  # Independence Day
    assert not trading_days.has_partition_key("2024-07-06")  # Saturday
    assert not trading_days.has_partition_key("2024-07-07")  # Sunday
    assert not trading_days.has_partition_key("2012-10-29")  # Hurricane Sandy: a weekday closure
    assert trading_days.has_partition_key("2024-07-05")
    assert trading_days.has_partition_key("2024-07-03")
    keys = trading_days.get_partition_keys_in_range(dg.PartitionKeyRange("2024-06-28", "2024-07-31"))
    assert keys == [d.isoformat() for d in calendar.sessions(dt.date(2024, 6, 28), dt.date(2024, 7, 31))]
    assert trading_days.get_first_partition_key() == "1990-01-02"
