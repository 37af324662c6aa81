"""Partitions on the exchange calendar: the session partitions are exactly the NYSE sessions."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from forecast_assets.partitions import TRADING_DAYS
from forecast_core.data import calendar


def test_trading_day_partitions_are_the_nyse_sessions():
    assert not TRADING_DAYS.has_partition_key("2024-07-04")  # Independence Day
    assert not TRADING_DAYS.has_partition_key("2024-07-06")  # Saturday
    assert not TRADING_DAYS.has_partition_key("2024-07-07")  # Sunday
    assert not TRADING_DAYS.has_partition_key("2012-10-29")  # Hurricane Sandy: a weekday closure
    assert TRADING_DAYS.has_partition_key("2024-07-05")
    assert TRADING_DAYS.has_partition_key("2024-07-03")
    keys = TRADING_DAYS.get_partition_keys_in_range(dg.PartitionKeyRange("2024-06-28", "2024-07-31"))
    assert keys == [d.isoformat() for d in calendar.sessions(dt.date(2024, 6, 28), dt.date(2024, 7, 31))]
    assert TRADING_DAYS.get_first_partition_key() == "1990-01-02"
