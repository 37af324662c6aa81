"""Partitions on the exchange calendar: one per trading session, one per retrain month.

Session partitions are weekdays minus the exchange's holidays and special closures (from
exchange_calendars), in America/New_York. `end_offset=1` makes the session that is trading today
a partition already, so the nightly run after the close can target it.
"""

import datetime as dt
import os

import dagster as dg

from forecast_core.config import load_config
from forecast_core.data import calendar

TIMEZONE = "America/New_York"


def trading_day_partitions(start: str, calendar_code: str = "XNYS") -> dg.DailyPartitionsDefinition:
    first = dt.date.fromisoformat(start)
    closed = calendar.non_session_weekdays(first, calendar.last_known_session(calendar_code), calendar_code)
    return dg.DailyPartitionsDefinition(
        start_date=start,
        timezone=TIMEZONE,
        end_offset=1,
        exclusions=["0 0 * * 6", "0 0 * * 0", *[dt.datetime(d.year, d.month, d.day) for d in closed]],
    )


def retrain_partitions(start: str) -> dg.MonthlyPartitionsDefinition:
    first = dt.date.fromisoformat(start).replace(day=1)
    return dg.MonthlyPartitionsDefinition(start_date=first.isoformat(), timezone=TIMEZONE, end_offset=1)


_cfg = load_config(os.environ.get("FORECAST_CONFIG"))
TRADING_DAYS = trading_day_partitions(_cfg.source.start_date, _cfg.calendar)
RETRAIN_MONTHS = retrain_partitions(_cfg.source.start_date)


def partition_dates(context: dg.AssetExecutionContext, calendar_code: str) -> tuple[dt.date, dt.date]:
    """First and last session of the run's partition (or partition range)."""
    window = context.partition_time_window
    start = window.start.date()
    last = window.end.date() - dt.timedelta(days=1)
    days = calendar.sessions(start, last, calendar_code)
    if not days:
        raise dg.Failure(f"partition {context.partition_key_range} holds no {calendar_code} session")
    return days[0], days[-1]
