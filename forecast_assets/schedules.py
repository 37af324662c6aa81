"""Schedules: the nightly run after the close, and the monthly retrain.

Both run in the time zone of the configured exchange calendar (America/New_York for XNYS). The
nightly schedule fires at 18:30 on weekdays and targets the session that just closed; on a day
that is not a session of that calendar (a holiday) it yields a SkipReason instead of a run. The
retrain schedule fires on the first calendar day of each month at 06:00 and trains the model of
that month (which sees data up to the previous month's last session, ingested the night before).
`forecast_assets.definitions.build_defs` builds them with `cfg.calendar`.
"""

import dagster as dg

from forecast_core.data import calendar

NIGHTLY_CRON = "30 18 * * 1-5"
RETRAIN_CRON = "0 6 1 * *"


def nightly_schedule(job, calendar_code: str) -> dg.ScheduleDefinition:
    @dg.schedule(
        job=job,
        cron_schedule=NIGHTLY_CRON,
        execution_timezone=calendar.timezone(calendar_code),
        default_status=dg.DefaultScheduleStatus.STOPPED,
        name="nightly_after_close",
    )
    def _nightly(context: dg.ScheduleEvaluationContext):
        day = context.scheduled_execution_time.date()
        if not calendar.is_session(day, calendar_code):
            return dg.SkipReason(f"{day} is not a {calendar_code} session (weekend or holiday)")
        return dg.RunRequest(run_key=day.isoformat(), partition_key=day.isoformat())

    return _nightly


def retrain_schedule(job, calendar_code: str) -> dg.ScheduleDefinition:
    @dg.schedule(
        job=job,
        cron_schedule=RETRAIN_CRON,
        execution_timezone=calendar.timezone(calendar_code),
        default_status=dg.DefaultScheduleStatus.STOPPED,
        name="monthly_retrain",
    )
    def _retrain(context: dg.ScheduleEvaluationContext):
        month = context.scheduled_execution_time.date().replace(day=1)
        return dg.RunRequest(run_key=month.isoformat(), partition_key=month.isoformat())

    return _retrain
