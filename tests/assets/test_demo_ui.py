"""The demo's flow as the UI shows it afterwards: `python -m forecast_assets.demo` on a small
configuration (its own DAGSTER_HOME, warehouse and configuration file), then `dagster dev` on the
same instance and what its GraphQL API (the UI's) says: every run listed under the code location
and under its job, raw_prices' session partitions all materialized and each with its own row count,
partitions ending where the sample's data end, `dagster/row_count` on every asset's latest
materialization and `dagster/column_schema` (from schema.sql's COMMENTs) on the warehouse tables."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.support.config import PROCESS_TOML

ROOT = Path(__file__).resolve().parents[2]
LOCATION = "forecast_assets.definitions"
REPOSITORY = "__repository__"
FIRST, LAST = "2019-01-02", "2022-12-28"
JOBS = ["ingest_job", "evaluation_job", "retrain_job", "forecast_job", "decision_job"]
ASSETS = [
    "raw_prices",
    "features",
    "walk_forward_folds",
    "fold_evaluation",
    "lstm_model",
    "daily_forecasts",
    "forecast_scores",
    "strategy_backtest",
    "forecast_explanations",
]
#: Assets and the warehouse table whose columns they declare.
TABLES = {
    "raw_prices": "raw_prices",
    "walk_forward_folds": "folds",
    "fold_evaluation": "fold_predictions",
    "lstm_model": "models",
    "daily_forecasts": "forecasts",
    "forecast_scores": "forecast_scores",
    "strategy_backtest": "backtest_metrics",
    "forecast_explanations": "forecast_explanations",
}

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo run to completion on the tiny configuration (the last 3 sessions forecast): its
    home, environment and terminal output."""
    home = tmp_path_factory.mktemp("demo_home")
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    config = home / "tiny.toml"
    config.write_text(PROCESS_TOML)
    env = os.environ | {
        "DAGSTER_HOME": str(home),
        "FORECAST_CONFIG": str(config),
        "FORECAST_WAREHOUSE": str(home / "w.duckdb"),
        "PYTHONPATH": str(ROOT),
    }
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "forecast_assets.demo", "--sessions", "3"],
        cwd=home,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    return home, env, done.stdout, time.monotonic() - started


@pytest.fixture(scope="module")
def graphql(demo):
    """A function that runs a GraphQL query against `make ui`'s server (`python -m
    forecast_assets.ui`: dagster dev) on the demo's instance; `.proc` is that process."""
    home, env, _, _ = demo
    port = _free_port()
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
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )

    def query(text: str, variables: dict | None = None) -> dict:
        body = json.dumps({"query": text, "variables": variables or {}}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/graphql", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.loads(response.read())
        assert "errors" not in answer, answer["errors"]
        return answer["data"]

    try:
        deadline = time.monotonic() + 240
        while True:
            try:
                names = query(
                    "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"
                )
                entries = names["workspaceOrError"]["locationEntries"]
                if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                    break
            except OSError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "dagster dev did not come up"
            time.sleep(2)
        query.proc = proc
        yield query
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)


def test_the_demo_talks_from_its_first_line_and_ends_with_a_summary(demo):
    _, _, out, _ = demo
    lines = out.splitlines()
    assert lines[0].startswith("[   0s] Stock forecasting demo")
    for job in JOBS:
        assert f"({job}, run " in out, job
    assert "raw_prices: fetching 2 tickers" not in out  # the exogenous index is fetched too
    assert "raw_prices: fetching 3 tickers" in out and "recorded 1,006 session partition(s)" in out
    assert "epoch" in out and "succeeded in" in out
    assert "Timings (s, wall per run" in out and "Leaderboard" in out
    assert "Warning" not in out and "Traceback" not in out  # Dagster's own output went to the log file


def test_the_demos_runs_belong_to_the_code_location_and_their_jobs(graphql):
    runs = graphql(
        "{ runsOrError { ... on Runs { results { runId jobName status "
        "repositoryOrigin { repositoryLocationName repositoryName } } } } }"
    )["runsOrError"]["results"]
    assert sorted(r["jobName"] for r in runs) == sorted(JOBS)
    assert {r["status"] for r in runs} == {"SUCCESS"}
    assert {
        (r["repositoryOrigin"]["repositoryLocationName"], r["repositoryOrigin"]["repositoryName"])
        for r in runs
    } == {(LOCATION, REPOSITORY)}
    for job in JOBS:  # the job's Runs tab
        page = graphql(
            "query($p: PipelineSelector!) { pipelineOrError(params: $p) { __typename ... on Pipeline { runs { runId } } } }",
            {"p": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "pipelineName": job}},
        )["pipelineOrError"]
        assert page["__typename"] == "Pipeline" and len(page["runs"]) == 1, job


ASSET = """
query($key: AssetKeyInput!, $partitions: [String!]) {
  assetNodeOrError(assetKey: $key) {
    ... on AssetNode {
      partitionStats { numMaterialized numPartitions numFailed }
      partitionKeysByDimension { partitionKeys }
      metadataEntries { label __typename ... on TableSchemaMetadataEntry { schema { columns { name type description } } } }
      assetMaterializations(partitions: $partitions, limit: 10) {
        partition
        metadataEntries { label ... on IntMetadataEntry { intValue } ... on TextMetadataEntry { text } }
      }
    }
  }
}
"""


def _asset(graphql, key: str, partitions: list[str] | None = None) -> dict:
    return graphql(ASSET, {"key": {"path": [key]}, "partitions": partitions})["assetNodeOrError"]


def _metadata(event: dict) -> dict:
    return {e["label"]: e.get("intValue", e.get("text")) for e in event["metadataEntries"]}


def test_raw_prices_partitions_end_with_the_data_and_carry_their_own_rows(graphql):
    node = _asset(graphql, "raw_prices", [FIRST, "2020-06-15", LAST])
    keys = node["partitionKeysByDimension"][0]["partitionKeys"]
    assert keys[0] == FIRST and keys[-1] == LAST  # not to today: the sample ends on 2022-12-28
    assert node["partitionStats"] == {
        "numMaterialized": len(keys),
        "numPartitions": len(keys),
        "numFailed": 0,
    }
    events = {e["partition"]: _metadata(e) for e in node["assetMaterializations"]}
    assert set(events) == {FIRST, "2020-06-15", LAST}
    for partition, metadata in events.items():
        assert metadata["dagster/row_count"] == 3, partition  # AAPL, KO and ^GSPC that session
        assert metadata["tickers"] == 3
    # The run's range is recorded once, on its last session, not on each of the 1,006.
    assert "run_rows" not in events[FIRST] and events[LAST]["run_rows"] == 3 * len(keys)
    assert events[LAST]["run_range"] == f"{FIRST}..{LAST} ({len(keys):,} sessions)"


def test_daily_forecasts_partitions_carry_their_own_rows(graphql):
    node = _asset(graphql, "daily_forecasts", ["2022-12-23", LAST])
    assert node["partitionStats"]["numMaterialized"] == 3
    for event in node["assetMaterializations"]:
        assert _metadata(event)["dagster/row_count"] == 2 * 2, event["partition"]  # 2 tickers x 2 horizons


def test_every_asset_has_a_row_count_and_the_warehouse_tables_their_columns(graphql):
    for asset in ASSETS:
        node = _asset(graphql, asset)
        latest = node["assetMaterializations"][0]
        assert isinstance(_metadata(latest).get("dagster/row_count"), int), asset
        schemas = [e for e in node["metadataEntries"] if e["label"] == "dagster/column_schema"]
        if asset in TABLES:
            [entry] = schemas
            assert entry["__typename"] == "TableSchemaMetadataEntry"
            columns = {c["name"]: c for c in entry["schema"]["columns"]}
            assert columns, asset
    raw = {
        c["name"]: c
        for c in [
            e
            for e in _asset(graphql, "raw_prices")["metadataEntries"]
            if e["label"] == "dagster/column_schema"
        ][0]["schema"]["columns"]
    }
    assert raw["adj_close"]["description"].startswith("Split- and dividend-adjusted close")
    assert raw["date"]["type"] == "DATE"


def test_the_ui_stops_within_seconds_of_sigterm(graphql):
    """Last in this module: `make ui`'s process stops (webserver, daemon, code server) within its
    grace period of a SIGTERM (dagster dev alone waited up to a minute per service)."""
    proc = graphql.proc
    started = time.monotonic()
    os.kill(proc.pid, 15)
    proc.wait(timeout=40)
    assert time.monotonic() - started < 25
