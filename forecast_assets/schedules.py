"""Schedules: the nightly run after the close, and the monthly retrain.

Both run in the time zone of the configured exchange calendar (America/New_York for XNYS). The
nightly schedule fires at 18:30 on weekdays and targets the session that just closed; on a day
that is not a session of that calendar (a holiday), or a session the source does not have (the
embedded sample ends on 2022-12-28, a file on its last row), it yields a SkipReason saying so
instead of a run that could only fail. The
retrain schedule fires on the first calendar day of each month at 06:00 and trains the model of
that month (which sees data up to the previous month's last session, ingested the night before).
`forecast_assets.definitions.build_defs` builds them with `cfg.calendar`.
"""

import datetime as dt
from collections.abc import Callable

import dagster as dg

from forecast_core.data import calendar

NIGHTLY_CRON = "30 18 * * 1-5"
RETRAIN_CRON = "0 6 1 * *"


def nightly_schedule(
    job,
    calendar_code: str,
    last_date: Callable[[], dt.date | None] | None = None,
    partitions: dg.PartitionsDefinition | None = None,
) -> dg.ScheduleDefinition:
    """`last_date()`: the last date the source has now (None: a live source, no limit);
    `partitions`: the job's session partitions (a session beyond them is skipped, with a reason)."""

    @dg.schedule(
        job=job,
        cron_schedule=NIGHTLY_CRON,
        execution_timezone=calendar.timezone(calendar_code),
        default_status=dg.DefaultScheduleStatus.STOPPED,
        name="nightly_after_close",
        description=f"18:30 {calendar.timezone(calendar_code)} on weekdays: prices, features, forecasts "
        f"and matured scores for the {calendar_code} session that just closed (nightly_job); skips "
        "holidays and sessions the source does not have.",
        tags={"team": "forecasting", "cadence": "nightly"},
    )
    def _nightly(context: dg.ScheduleEvaluationContext):
        day = context.scheduled_execution_time.date()
        if not calendar.is_session(day, calendar_code):
            return dg.SkipReason(f"{day} is not a {calendar_code} session (weekend or holiday)")
        last = last_date() if last_date else None
        if last is not None and day > last:
            return dg.SkipReason(
                f"the source has no prices for {day}: its data end on {last} (the embedded sample "
                "ends on 2022-12-28; a file source on its last row). Nothing to forecast."
            )
        if partitions is not None and not partitions.has_partition_key(day.isoformat()):
            return dg.SkipReason(
                f"{day} is not a partition of nightly_job yet (partitions end on "
                f"{partitions.get_last_partition_key()}): reload the code location to pick up new data"
            )
        return dg.RunRequest(run_key=day.isoformat(), partition_key=day.isoformat())

    return _nightly


def retrain_schedule(job, calendar_code: str) -> dg.ScheduleDefinition:
    @dg.schedule(
        job=job,
        cron_schedule=RETRAIN_CRON,
        execution_timezone=calendar.timezone(calendar_code),
        default_status=dg.DefaultScheduleStatus.STOPPED,
        name="monthly_retrain",
        description=f"06:00 {calendar.timezone(calendar_code)} on the 1st: trains the month's production "
        "LSTM on data up to the previous session (retrain_job) and runs its promotion gate.",
        tags={"team": "forecasting", "cadence": "monthly"},
    )
    def _retrain(context: dg.ScheduleEvaluationContext):
        month = context.scheduled_execution_time.date().replace(day=1)
        return dg.RunRequest(run_key=month.isoformat(), partition_key=month.isoformat())

    return _retrain
