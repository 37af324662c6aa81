"""End to end through the real webserver and daemon: `dagster dev` in a subprocess with its own
DAGSTER_HOME, the nightly job launched through Dagster's GraphQL API for a sample date."""

import datetime as dt
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from forecast_assets.definitions import build_defs
from tests.support.config import PROCESS_TOML
from warehouse import read_sql

ROOT = Path(__file__).resolve().parents[2]
NIGHT = "2022-12-28"

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _range(start: str, end: str) -> dict[str, str]:
    return {"dagster/asset_partition_range_start": start, "dagster/asset_partition_range_end": end}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A warehouse with prices to the day before NIGHT, December's model, and forecasts for
    the sessions before NIGHT (so the nightly run has forecasts that mature on NIGHT)."""
    home = tmp_path_factory.mktemp("dagster_home")
    config = home / "tiny.toml"
    config.write_text(PROCESS_TOML)
    path = home / "w.duckdb"
    # The definitions the server will load from $FORECAST_CONFIG and $FORECAST_WAREHOUSE, built here.
    defs = build_defs(str(config), str(path))
    for asset, tags, partition_key in [
        ("raw_prices", _range("2022-12-01", "2022-12-27"), None),
        ("features", {}, None),
        ("lstm_model", {}, "2022-12-01"),
        ("daily_forecasts", _range("2022-12-19", "2022-12-27"), None),
    ]:
        result = dg.materialize(
            defs.assets, selection=[asset], resources=defs.resources, tags=tags, partition_key=partition_key
        )
        assert result.success
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    return home, path, config


def test_nightly_job_through_webserver_and_daemon(prepared):
    from dagster_graphql import DagsterGraphQLClient

    home, path, config = prepared
    port = _free_port()
    env = os.environ | {
        "DAGSTER_HOME": str(home),
        "FORECAST_WAREHOUSE": str(path),
        "FORECAST_CONFIG": str(config),
        "PYTHONPATH": str(ROOT),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dagster",
            "dev",
            "-w",
            str(ROOT / "workspace.yaml"),
            "-p",
            str(port),
            "-h",
            "127.0.0.1",
        ],
        cwd=home,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        client = DagsterGraphQLClient("127.0.0.1", port_number=port, timeout=30)
        deadline = time.monotonic() + 180
        run_id = None
        while run_id is None:
            try:
                run_id = client.submit_job_execution("nightly_job", tags={"dagster/partition": NIGHT})
            except Exception:  # noqa: BLE001 - the server is still starting
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(2)
        status = None
        while time.monotonic() < deadline + 420:
            status = client.get_run_status(run_id)
            if status in (
                dg.DagsterRunStatus.SUCCESS,
                dg.DagsterRunStatus.FAILURE,
                dg.DagsterRunStatus.CANCELED,
            ):
                break
            time.sleep(3)
        assert status == dg.DagsterRunStatus.SUCCESS, f"nightly run ended {status}"
    finally:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)

    night = dt.date.fromisoformat(NIGHT)
    made = read_sql("SELECT ticker, horizon FROM forecasts WHERE as_of_date = ? ORDER BY ALL", [night], path)
    assert made.rows() == [("AAPL", 1), ("AAPL", 5), ("KO", 1), ("KO", 5)]
    matured = read_sql(
        "SELECT as_of_date, ticker, horizon FROM forecast_scores WHERE target_date = ? ORDER BY ALL",
        [night],
        path,
    )
    # The 1-session forecasts of 2022-12-27 and the 5-session forecasts of 2022-12-20 mature on NIGHT.
    assert matured.rows() == [
        (dt.date(2022, 12, 20), "AAPL", 5),
        (dt.date(2022, 12, 20), "KO", 5),
        (dt.date(2022, 12, 27), "AAPL", 1),
        (dt.date(2022, 12, 27), "KO", 1),
    ]
    stored = read_sql("SELECT count(*) AS n FROM raw_prices WHERE date = ?", [night], path)
    assert stored["n"][0] == 3
