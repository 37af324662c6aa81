"""The exchange calendar's time zone: what the partitions and schedules of a calendar run in."""

from __future__ import annotations

import pytest

from forecast_core.data import calendar
from forecast_core.errors import ConfigError


@pytest.mark.parametrize(
    "code,zone", [("XNYS", "America/New_York"), ("XLON", "Europe/London"), ("XHKG", "Asia/Hong_Kong")]
)
def test_timezone_is_the_exchange_calendars_zone(code, zone):
    assert calendar.timezone(code) == zone


def test_timezone_of_an_unknown_calendar_names_it():
    with pytest.raises(ConfigError, match="'XXXX'"):
        calendar.timezone("XXXX")
