"""Partitions on the exchange calendar: one per trading session, one per retrain month.

Session partitions are weekdays minus the exchange's holidays and special closures (from
exchange_calendars), in the exchange's time zone. Where the source has a last date (the embedded
sample, a file), they end on it: the UI then offers only sessions that can be materialized (the
sample's end on 2022-12-28), and a Materialize dialog's defaults work. Otherwise (yfinance) they
run to today. Either way `end_offset=1` makes the session that is trading today a partition already
(within the end date), so the nightly run after the close can target it. Retrain months end with
the month of the last session likewise.

`forecast_assets.definitions.build_defs` builds both from the configuration it runs with
(`cfg.calendar`, `cfg.source.start_date`), so that the partitions and the data always come from
the same file; nothing here reads the configuration.
"""

import datetime as dt

import dagster as dg

from forecast_core.data import calendar


def trading_day_partitions(
    start: str, calendar_code: str, end: dt.date | None = None
) -> dg.DailyPartitionsDefinition:
    """One partition per session of `calendar_code` from `start` (an ISO date) on, up to `end`
    (the source's last date) included, or up to today's session if `end` is None."""
    first = dt.date.fromisoformat(start)
    last = end or calendar.last_known_session(calendar_code)
    closed = calendar.non_session_weekdays(first, last, calendar_code)
    return dg.DailyPartitionsDefinition(
        start_date=start,
        end_date=(end + dt.timedelta(days=1)).isoformat() if end is not None else None,
        timezone=calendar.timezone(calendar_code),
        end_offset=1,
        exclusions=["0 0 * * 6", "0 0 * * 0", *[dt.datetime(d.year, d.month, d.day) for d in closed]],
    )


def retrain_partitions(
    start: str, calendar_code: str, end: dt.date | None = None
) -> dg.MonthlyPartitionsDefinition:
    """One partition per calendar month from the month of `start` on, in the exchange's time zone,
    up to the month of `end` included (None: up to the current month)."""
    first = dt.date.fromisoformat(start).replace(day=1)
    following = (end.replace(day=1) + dt.timedelta(days=32)).replace(day=1) if end is not None else None
    return dg.MonthlyPartitionsDefinition(
        start_date=first.isoformat(),
        end_date=following.isoformat() if following else None,
        timezone=calendar.timezone(calendar_code),
        end_offset=1,
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
