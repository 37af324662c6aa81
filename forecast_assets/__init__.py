"""Dagster definitions of the forecasting job: assets, checks, jobs, schedules and resources."""
