"""Resources: where the warehouse is and which configuration file the job runs with.

Both default from the environment (`FORECAST_WAREHOUSE`, `FORECAST_CONFIG`), so the UI, the
schedules, the demo and the tests share one set of defaults: `forecast_core.config`.
"""

import os

import dagster as dg

from forecast_core.config import ForecastConfig, load_config
from warehouse.db import warehouse_path


class WarehouseResource(dg.ConfigurableResource):
    """The DuckDB warehouse file. Connections are opened per read or write by `warehouse`."""

    path: str | None = None

    @property
    def resolved_path(self) -> str:
        return str(warehouse_path(self.path))


class PipelineConfig(dg.ConfigurableResource):
    """The job's settings: a TOML file of overrides on `forecast_core.config` defaults."""

    config_file: str | None = None

    def load(self) -> ForecastConfig:
        return load_config(self.config_file)


def default_resources() -> dict[str, dg.ConfigurableResource]:
    return {
        "warehouse": WarehouseResource(path=os.environ.get("FORECAST_WAREHOUSE")),
        "pipeline": PipelineConfig(config_file=os.environ.get("FORECAST_CONFIG")),
    }
