"""Schedules as the daemon sees them, on definitions built from a configuration file: the nightly
run targets the session that just closed and skips holidays and sessions the source does not have
(the sample ends on 2022-12-28), the monthly retrain targets its month, both in the configured
calendar's time zone (XNYS on the tiny configuration, XLON on another)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from forecast_assets.definitions import build_defs
from tests.support.config import write_config

NEW_YORK = ZoneInfo("America/New_York")
LONDON = ZoneInfo("Europe/London")


def tick(defs: dg.Definitions, schedule_name: str, when: dt.datetime) -> dg.ScheduleExecutionData:
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
def test_nightly_schedule_targets_the_session_that_just_closed(tiny_defs, day):
    data = tick(tiny_defs, "nightly_after_close", after_close(day))
    assert data.skip_message is None
    [request] = data.run_requests
    assert request.partition_key == day.isoformat()
    assert request.run_key == day.isoformat()  # one run per session, even if the tick is retried
    trading_days = tiny_defs.resolve_job_def("nightly_job").partitions_def
    assert request.partition_key in trading_days.get_partition_keys_in_range(
        dg.PartitionKeyRange(day.isoformat(), day.isoformat())
    )


@pytest.mark.parametrize("day", [dt.date(2024, 7, 4), dt.date(2024, 12, 25), dt.date(2024, 3, 29)])
def test_nightly_schedule_skips_holidays(tiny_defs, day):
    data = tick(tiny_defs, "nightly_after_close", after_close(day))
    assert not data.run_requests
    assert str(day) in data.skip_message and "not a XNYS session" in data.skip_message


def test_nightly_schedule_skips_sessions_the_source_does_not_have(sample_defs):
    """The sample ends on 2022-12-28: its last session gets a run, the next one a reason, and the
    session partitions (and the retrain months) end there too."""
    [request] = tick(sample_defs, "nightly_after_close", after_close(dt.date(2022, 12, 28))).run_requests
    assert request.partition_key == "2022-12-28"
    skipped = tick(sample_defs, "nightly_after_close", after_close(dt.date(2022, 12, 29)))
    assert not skipped.run_requests
    assert "no prices for 2022-12-29" in skipped.skip_message and "2022-12-28" in skipped.skip_message
    sessions = sample_defs.resolve_job_def("nightly_job").partitions_def
    assert sessions.get_last_partition_key() == "2022-12-28"
    assert sample_defs.resolve_job_def("retrain_job").partitions_def.get_last_partition_key() == "2022-12-01"


def test_schedules_have_descriptions(tiny_defs):
    for name in ("nightly_after_close", "monthly_retrain"):
        assert tiny_defs.resolve_schedule_def(name).description, name


def test_schedules_fire_after_the_close_and_on_the_first_of_the_month(tiny_defs):
    nightly = tiny_defs.resolve_schedule_def("nightly_after_close")
    assert (nightly.cron_schedule, nightly.execution_timezone) == ("30 18 * * 1-5", "America/New_York")
    retrain = tiny_defs.resolve_schedule_def("monthly_retrain")
    assert (retrain.cron_schedule, retrain.execution_timezone) == ("0 6 1 * *", "America/New_York")


def test_monthly_retrain_targets_its_month(tiny_defs):
    data = tick(tiny_defs, "monthly_retrain", dt.datetime(2024, 8, 1, 6, 0, tzinfo=NEW_YORK))
    [request] = data.run_requests
    assert request.partition_key == "2024-08-01"
    assert tiny_defs.resolve_job_def("retrain_job").partitions_def.has_partition_key("2024-08-01")
    schedule = tiny_defs.resolve_schedule_def("monthly_retrain")
    assert schedule.job_name == "retrain_job"
    assert tiny_defs.resolve_schedule_def("nightly_after_close").job_name == "nightly_job"


def test_schedules_and_partitions_follow_the_configured_calendar_and_start(tmp_path):
    """On XLON the nightly run fires after the London close, in London time, on LSE sessions (not
    NYSE ones), and the partitions start at the configured start date."""
    config = write_config(
        tmp_path / "xlon.toml",
        {"calendar": "XLON", "source": {"kind": "yfinance", "start_date": "2021-03-01"}},
    )
    defs = build_defs(str(config), str(tmp_path / "w.duckdb"))
    nightly = defs.resolve_schedule_def("nightly_after_close")
    assert (nightly.cron_schedule, nightly.execution_timezone) == ("30 18 * * 1-5", "Europe/London")
    assert defs.resolve_schedule_def("monthly_retrain").execution_timezone == "Europe/London"

    # 2024-07-04, Independence Day: the NYSE is closed, the LSE trades.
    [request] = tick(defs, "nightly_after_close", dt.datetime(2024, 7, 4, 18, 30, tzinfo=LONDON)).run_requests
    assert request.partition_key == "2024-07-04"
    # 2024-08-26, the summer bank holiday: the LSE is closed, the NYSE trades.
    skipped = tick(defs, "nightly_after_close", dt.datetime(2024, 8, 26, 18, 30, tzinfo=LONDON))
    assert not skipped.run_requests
    assert "2024-08-26" in skipped.skip_message and "not a XLON session" in skipped.skip_message

    sessions = defs.resolve_job_def("nightly_job").partitions_def
    assert sessions.timezone == "Europe/London"
    assert sessions.get_first_partition_key() == "2021-03-01"
    assert sessions.has_partition_key("2024-07-04") and not sessions.has_partition_key("2024-08-26")
    months = defs.resolve_job_def("retrain_job").partitions_def
    assert (months.timezone, months.get_first_partition_key()) == ("Europe/London", "2021-03-01")
