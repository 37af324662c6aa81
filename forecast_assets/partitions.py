"""Partitions on the exchange calendar: one per trading session, one per retrain month.

Session partitions are weekdays minus the exchange's holidays and special closures (from
exchange_calendars), in the exchange's time zone. `end_offset=1` makes the session that is trading
today a partition already, so the nightly run after the close can target it.

`forecast_assets.definitions.build_defs` builds both from the configuration it runs with
(`cfg.calendar`, `cfg.source.start_date`), so that the partitions and the data always come from
the same file; nothing here reads the configuration.
"""

import datetime as dt

import dagster as dg

from forecast_core.data import calendar


def trading_day_partitions(start: str, calendar_code: str) -> dg.DailyPartitionsDefinition:
    """One partition per session of `calendar_code` from `start` (an ISO date) on."""
    first = dt.date.fromisoformat(start)
    closed = calendar.non_session_weekdays(first, calendar.last_known_session(calendar_code), calendar_code)
    return dg.DailyPartitionsDefinition(
        start_date=start,
        timezone=calendar.timezone(calendar_code),
        end_offset=1,
        exclusions=["0 0 * * 6", "0 0 * * 0", *[dt.datetime(d.year, d.month, d.day) for d in closed]],
    )


def retrain_partitions(start: str, calendar_code: str) -> dg.MonthlyPartitionsDefinition:
    """One partition per calendar month from the month of `start` on, in the exchange's time zone."""
    first = dt.date.fromisoformat(start).replace(day=1)
    return dg.MonthlyPartitionsDefinition(
        start_date=first.isoformat(), timezone=calendar.timezone(calendar_code), end_offset=1
    )


def partition_dates(context: dg.AssetExecutionContext, calendar_code: str) -> tuple[dt.date, dt.date]:
    """First and last session of the run's partition (or partition range)."""
    window = context.partition_time_window
    start = window.start.date()
    last = window.end.date() - dt.timedelta(days=1)
    days = calendar.sessions(start, last, calendar_code)
    if not days:
        raise dg.Failure(f"partition {context.partition_key_range} holds no {calendar_code} session")
    return days[0], days[-1]
