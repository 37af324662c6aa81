"""The job's definitions with Dagster's Kubernetes executor: each step runs in its own pod.

The same assets, checks, jobs, schedules and resources as `forecast_assets.definitions` (built by
the same `build_defs`, from the same configuration file); only the executor changes, configured
from `deploy/executor.yaml`. The user-code server of a Kubernetes deployment loads this module
(`dagster api grpc -m deploy.definitions`); locally, `forecast_assets.definitions` keeps the
multiprocess executor. Needs the `deploy` extra.
"""

import os
from pathlib import Path

import dagster as dg
import yaml
from dagster_k8s import k8s_job_executor

from forecast_assets import definitions as local

EXECUTOR_CONFIG = Path(__file__).with_name("executor.yaml")


def executor_config() -> dict:
    return yaml.safe_load(EXECUTOR_CONFIG.read_text())


executor = k8s_job_executor.configured(executor_config(), name="k8s_forecast")


def build_defs(config_file: str | None = None, warehouse: str | None = None) -> dg.Definitions:
    """`forecast_assets.definitions.build_defs(config_file, warehouse)` on the Kubernetes executor."""
    return dg.Definitions.merge(local.build_defs(config_file, warehouse), dg.Definitions(executor=executor))


defs = build_defs(os.environ.get("FORECAST_CONFIG"), os.environ.get("FORECAST_WAREHOUSE"))
