"""The deployment beyond one machine (deploy/) loads and validates with Dagster's own config
machinery, without a cluster or a database: the instance YAML (Postgres storage, queued runs, the
Kubernetes run launcher) against the instance schema and the launcher's and coordinator's own
schemas; the executor YAML against `k8s_job_executor`'s schema; and every job of
`deploy.definitions` runs on that executor with a valid run configuration.

The Kubernetes parts use dagster-k8s and dagster-postgres, which the `dev` extra installs.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._config import validate_config
from dagster._core.errors import DagsterInvalidConfigError
from dagster._core.instance.config import dagster_instance_config
from dagster._serdes.config_class import class_from_code_pointer

from tests.support.config import TINY_CONFIG, write_config

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
JOBS = ("ingest_job", "evaluation_job", "retrain_job", "nightly_job", "forecast_job", "decision_job")


def instance_config() -> dict:
    config, custom_class = dagster_instance_config(str(DEPLOY))
    assert custom_class is None
    return dict(config)


def test_instance_yaml_validates_with_postgres_storage_and_secrets_from_the_environment():
    config = instance_config()
    db = config["storage"]["postgres"]["postgres_db"]
    assert db["password"] == {"env": "DAGSTER_PG_PASSWORD"}  # never a literal secret
    assert all(isinstance(db[k], dict) and "env" in db[k] for k in ("hostname", "username", "db_name"))
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert (config["run_launcher"]["module"], config["run_launcher"]["class"]) == (
        "dagster_k8s",
        "K8sRunLauncher",
    )
    assert config["concurrency"]["pools"]["default_limit"] == 1  # the warehouse_write pool
    assert config["concurrency"]["runs"]["max_concurrent_runs"] == 4


@pytest.mark.parametrize(
    "path,value",
    [(("storage", "postgres", "postgres_db", "hostnme"), "db"),  # misspelled key
     (("concurrency", "runs", "max_concurrent_runs"), "four"),  # wrong type
     (("run_coordinator", "config"), {"max_concurrent_runs": 4})],  # conflicts with concurrency.runs
)  # fmt: skip
def test_a_broken_instance_yaml_is_rejected(tmp_path, path, value):
    """The validation is real: the same file with one broken setting fails to load."""
    config = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    node = config
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(DagsterInvalidConfigError):
        dagster_instance_config(str(tmp_path))


@pytest.mark.parametrize("section", ["run_coordinator", "run_launcher", "compute_logs"])
def test_configurable_classes_accept_their_config(section):
    """Each class the instance names exists and validates its config block with its own schema."""
    entry = instance_config()[section]
    cls = class_from_code_pointer(entry["module"], entry["class"])
    schema = cls.config_type() if hasattr(cls, "config_type") else {}
    result = validate_config(schema, entry.get("config") or {})
    assert result.success, [e.message for e in result.errors]


def executor_yaml() -> dict:
    return yaml.safe_load((DEPLOY / "executor.yaml").read_text())


def test_executor_yaml_validates_against_the_k8s_executor_schema():
    import dagster_k8s

    schema = dagster_k8s.k8s_job_executor.config_schema.config_type
    result = validate_config(schema, executor_yaml())
    assert result.success, [e.message for e in result.errors]
    broken = {**executor_yaml(), "max_concurent": 5}
    assert not validate_config(schema, broken).success


def test_every_job_runs_on_the_k8s_executor_with_a_valid_run_config(tmp_path):
    from deploy.definitions import build_defs
    from forecast_assets.definitions import build_defs as build_local_defs

    config, warehouse = str(write_config(tmp_path / "tiny.toml", TINY_CONFIG)), str(tmp_path / "w.duckdb")
    defs = build_defs(config, warehouse)
    for name in JOBS:
        job = defs.resolve_job_def(name)
        assert job.executor_def.name == "k8s_forecast", name
        dg.validate_run_config(job, {})
    # The same asset graph, partitions and resources as the local definitions of the same
    # configuration: only the executor differs.
    local = build_local_defs(config, warehouse)
    assert {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()} == {
        k.to_user_string() for k in local.resolve_asset_graph().get_all_asset_keys()
    }
    for name in JOBS:
        assert defs.resolve_job_def(name).partitions_def == local.resolve_job_def(name).partitions_def, name
    assert defs.resources["pipeline"].config_file == config and defs.resources["warehouse"].path == warehouse


def test_the_module_level_definitions_load():
    """What the user-code server loads (`dagster api grpc -m deploy.definitions`)."""
    from deploy.definitions import defs

    assert {job.name for job in defs.resolve_all_job_defs()} >= set(JOBS)
