"""Schedules as the daemon sees them: the nightly run targets the session that just closed and
skips holidays, the monthly retrain targets its month."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from forecast_assets.definitions import defs
from forecast_assets.partitions import RETRAIN_MONTHS, TRADING_DAYS

NEW_YORK = ZoneInfo("America/New_York")
JOBS = ("ingest_job", "evaluation_job", "retrain_job", "nightly_job", "forecast_job")


def tick(schedule_name: str, when: dt.datetime) -> dg.ScheduleExecutionData:
    schedule = defs.resolve_schedule_def(schedule_name)
    with dg.build_schedule_context(
        scheduled_execution_time=when, repository_def=defs.get_repository_def()
    ) as context:
        return schedule.evaluate_tick(context)


def after_close(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, 18, 30, tzinfo=NEW_YORK)


@pytest.mark.parametrize(
    "day",
    [
        dt.date(2024, 3, 13),  # a Wednesday (EDT since 2024-03-10)
        dt.date(2024, 3, 15),  # a Friday
        dt.date(2024, 7, 5),  # the day after Independence Day
        dt.date(2024, 1, 2),  # the first session of a year, in EST
        dt.date(2024, 11, 29),  # the day after Thanksgiving (closes at 13:00, still a session)
    ],
)
def test_nightly_schedule_targets_the_session_that_just_closed(day):
    data = tick("nightly_after_close", after_close(day))
    assert data.skip_message is None
    [request] = data.run_requests
    assert request.partition_key == day.isoformat()
    assert request.run_key == day.isoformat()  # one run per session, even if the tick is retried
    assert request.partition_key in TRADING_DAYS.get_partition_keys_in_range(
        dg.PartitionKeyRange(day.isoformat(), day.isoformat())
    )


@pytest.mark.parametrize("day", [dt.date(2024, 7, 4), dt.date(2024, 12, 25), dt.date(2024, 3, 29)])
def test_nightly_schedule_skips_holidays(day):
    data = tick("nightly_after_close", after_close(day))
    assert not data.run_requests
    assert str(day) in data.skip_message and "not a XNYS session" in data.skip_message


def test_schedules_fire_after_the_close_and_on_the_first_of_the_month():
    nightly = defs.resolve_schedule_def("nightly_after_close")
    assert (nightly.cron_schedule, nightly.execution_timezone) == ("30 18 * * 1-5", "America/New_York")
    retrain = defs.resolve_schedule_def("monthly_retrain")
    assert (retrain.cron_schedule, retrain.execution_timezone) == ("0 6 1 * *", "America/New_York")


def test_monthly_retrain_targets_its_month():
    data = tick("monthly_retrain", dt.datetime(2024, 8, 1, 6, 0, tzinfo=NEW_YORK))
    [request] = data.run_requests
    assert request.partition_key == "2024-08-01"
    assert RETRAIN_MONTHS.has_partition_key("2024-08-01")
    schedule = defs.resolve_schedule_def("monthly_retrain")
    assert schedule.job_name == "retrain_job"
    assert defs.resolve_schedule_def("nightly_after_close").job_name == "nightly_job"
