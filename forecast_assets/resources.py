"""Resources: where the warehouse is and which configuration file the job runs with.

`forecast_assets.definitions.build_defs(config_file, warehouse)` binds both, from the same
configuration file it builds the partitions and schedules with; its module-level `defs` (what the
UI, the daemon and the demo load) takes them from the environment (`FORECAST_CONFIG`,
`FORECAST_WAREHOUSE`). Unset, the configuration is `forecast_core.config`'s defaults and the
warehouse path `warehouse.db.warehouse_path`'s.
"""

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
