"""The job's definitions with Dagster's Kubernetes executor: each step runs in its own pod.

The same assets, checks, jobs, schedules and resources as `forecast_assets.definitions`; only the
executor changes, configured from `deploy/executor.yaml`. The user-code server of a Kubernetes
deployment loads this module (`dagster api grpc -m deploy.definitions`); locally,
`forecast_assets.definitions` keeps the multiprocess executor. Needs the `deploy` extra.
"""

from pathlib import Path

import dagster as dg
import yaml
from dagster_k8s import k8s_job_executor

from forecast_assets.definitions import defs as local_defs

EXECUTOR_CONFIG = Path(__file__).with_name("executor.yaml")


def executor_config() -> dict:
    return yaml.safe_load(EXECUTOR_CONFIG.read_text())


executor = k8s_job_executor.configured(executor_config(), name="k8s_forecast")

defs = dg.Definitions.merge(local_defs, dg.Definitions(executor=executor))
