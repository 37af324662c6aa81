"""The exchange's trading calendar (sessions, holidays, session arithmetic) via exchange_calendars.

Dates here are `datetime.date` sessions in the exchange's own time zone (America/New_York for XNYS).
"""

from __future__ import annotations

import bisect
import datetime as dt
from functools import lru_cache

import exchange_calendars as xcals
import pandas as pd

from forecast_core.errors import ConfigError

#: Earliest session the calendars are built from (the embedded sample starts on 1990-01-02).
CALENDAR_START = "1990-01-01"


@lru_cache(maxsize=4)
def _calendar(code: str) -> xcals.ExchangeCalendar:
    try:
        return xcals.get_calendar(code, start=CALENDAR_START)
    except xcals.errors.InvalidCalendarName as exc:
        raise ConfigError(f"invalid setting calendar = {code!r}: unknown exchange calendar") from exc


@lru_cache(maxsize=4)
def _session_index(code: str) -> tuple[dt.date, ...]:
    return tuple(d.date() for d in _calendar(code).sessions)


def timezone(code: str) -> str:
    """The exchange's time zone, as an IANA name (America/New_York for XNYS, Europe/London for XLON)."""
    return str(_calendar(code).tz)


def last_known_session(code: str = "XNYS") -> dt.date:
    """The last session the calendar knows (about a year ahead of today)."""
    return _session_index(code)[-1]


def sessions(start: dt.date, end: dt.date, code: str = "XNYS") -> list[dt.date]:
    """All sessions in [start, end], inclusive."""
    idx = _session_index(code)
    lo = bisect.bisect_left(idx, start)
    hi = bisect.bisect_right(idx, end)
    return list(idx[lo:hi])


def non_session_weekdays(start: dt.date, end: dt.date, code: str = "XNYS") -> list[dt.date]:
    """Weekdays in [start, end] on which the exchange is closed (holidays, special closures)."""
    open_days = set(sessions(start, end, code))
    days = pd.bdate_range(start, end)
    return [d.date() for d in days if d.date() not in open_days]


def is_session(day: dt.date, code: str = "XNYS") -> bool:
    idx = _session_index(code)
    i = bisect.bisect_left(idx, day)
    return i < len(idx) and idx[i] == day


def add_sessions(day: dt.date, n: int, code: str = "XNYS") -> dt.date:
    """The session `n` sessions after session `day` (n may be negative).

    `day` must be a session; raises ValueError naming the date otherwise, or when the result falls
    outside the calendar's known range.
    """
    idx = _session_index(code)
    i = bisect.bisect_left(idx, day)
    if i >= len(idx) or idx[i] != day:
        raise ValueError(f"{day} is not a {code} session")
    j = i + n
    if not 0 <= j < len(idx):
        raise ValueError(f"{day} + {n} sessions is outside the {code} calendar ({idx[0]}..{idx[-1]})")
    return idx[j]


def previous_session(day: dt.date, code: str = "XNYS") -> dt.date:
    """The last session strictly before `day` (which need not be a session)."""
    idx = _session_index(code)
    i = bisect.bisect_left(idx, day)
    if i == 0:
        raise ValueError(f"no {code} session before {day}")
    return idx[i - 1]
