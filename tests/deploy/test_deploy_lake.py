"""The cluster's instance and warehouse settings are the ones tested on one machine: the Kubernetes
instance (deploy/dagster.yaml) stores runs in PostgreSQL with the same block as
deploy/postgres/dagster.yaml (tests/deploy/test_dagster_postgres.py runs it on a real server), the
DuckLake settings of deploy/lake.toml load as `warehouse.lake` reads them (tests/warehouse/
test_lake*.py run that backend), and the run pods and the step pods mount the settings file and the
lake's data directory at the paths the file names."""

from __future__ import annotations

from pathlib import Path

import yaml

from warehouse import lake

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SETTINGS_DIR = "/etc/forecast-warehouse"


def _yaml(name: str) -> dict:
    return yaml.safe_load((DEPLOY / name).read_text())


def test_the_cluster_instance_has_the_tested_postgres_storage_and_pool():
    cluster, local = _yaml("dagster.yaml"), _yaml("postgres/dagster.yaml")
    assert cluster["storage"] == local["storage"]
    assert cluster["storage"]["postgres"]["postgres_db"]["scheme"] == "postgresql+psycopg2"
    assert (
        cluster["concurrency"]["pools"]
        == local["concurrency"]["pools"]
        == {"granularity": "op", "default_limit": 1}
    )


def test_the_lake_settings_load_with_the_password_left_to_the_environment():
    settings = lake.load(DEPLOY / "lake.toml")
    assert settings.kind == "postgres" and "password" not in settings.catalog
    assert settings.data_path == "/data/forecast-lake/"


def test_run_pods_and_step_pods_mount_the_settings_and_the_data_where_the_settings_say():
    settings = lake.load(DEPLOY / "lake.toml")
    launcher = _yaml("dagster.yaml")["run_launcher"]["config"]
    executor = _yaml("executor.yaml")
    for config in (launcher, executor):
        mounts = {m["name"]: m["mount_path"] for m in config["volume_mounts"]}
        volumes = {v["name"]: v for v in config["volumes"]}
        assert mounts["forecast-warehouse-settings"] == SETTINGS_DIR
        assert volumes["forecast-warehouse-settings"]["configMap"]["name"] == "forecast-warehouse-settings"
        assert settings.data_path.rstrip("/") == mounts["forecast-lake-data"]
        assert volumes["forecast-lake-data"]["persistentVolumeClaim"]["claimName"] == "forecast-lake-data"
        assert "forecast-warehouse" in config["env_secrets"]  # PGPASSWORD
