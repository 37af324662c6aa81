"""Dagster on PostgreSQL, for real: the instance of `deploy/postgres/dagster.yaml` on a throwaway
server (`tests.support.postgres`); the processes of a deployment, each on its own: the code server
(`dagster api grpc -m forecast_assets.definitions`), the webserver and the daemon; a backfill and
the nightly job queued at the same time through the GraphQL API.

The daemon dequeues both runs (at most two at once), the `warehouse_write` pool (one slot, kept in
PostgreSQL) lets one writing step run at a time across them, and afterwards the runs, their
queue events, the materializations and the check results are read back from PostgreSQL, both
through `DagsterInstance` and with plain SQL on Dagster's tables; nothing was kept in SQLite.

The runs execute their steps in process (run config `execution: in_process`): with the
multiprocess executor every step (and every check) is a fresh Python process, minutes on a busy
2-core machine, and the queue and the pool work the same either way (slots are claimed per step
by the run worker, across runs).
"""

from __future__ import annotations

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
from tests.support import postgres
from tests.support.config import PROCESS_TOML
from warehouse import read_sql

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
INSTANCE_YAML = ROOT / "deploy" / "postgres" / "dagster.yaml"
NIGHT = "2022-12-28"
BACKFILL = ["2022-12-23", "2022-12-27"]  # daily_forecasts for two sessions, one run
LAUNCH_BACKFILL = """
mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
  }
}
"""
IN_PROCESS = {"execution": {"config": {"in_process": {}}}}
DONE = (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _range(start: str, end: str) -> dict[str, str]:
    return {"dagster/asset_partition_range_start": start, "dagster/asset_partition_range_end": end}


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    """DAGSTER_HOME with the Postgres instance file, a fresh database on the throwaway server, and
    a warehouse with prices to the day before NIGHT, features, December's model and forecasts
    for 2022-12-19..22 (prepared in process, outside the instance)."""
    server = postgres.server()
    database = server.create_database("dagster")
    home = tmp_path_factory.mktemp("dagster_pg_home")
    shutil.copy(INSTANCE_YAML, home / "dagster.yaml")
    config, path = home / "tiny.toml", home / "w.duckdb"
    config.write_text(PROCESS_TOML)
    defs = build_defs(str(config), str(path))
    for asset, tags, partition_key in [
        ("raw_prices", _range("2022-12-01", "2022-12-27"), None),
        ("features", {}, None),
        ("lstm_model", {}, "2022-12-01"),
        ("daily_forecasts", _range("2022-12-19", "2022-12-22"), None),
    ]:
        result = dg.materialize(
            defs.assets, selection=[asset], resources=defs.resources, tags=tags, partition_key=partition_key
        )
        assert result.success
    env = (
        os.environ
        | server.env(database)
        | {
            "DAGSTER_HOME": str(home),
            "FORECAST_WAREHOUSE": str(path),
            "FORECAST_CONFIG": str(config),
            "PYTHONPATH": str(ROOT),
        }
    )
    return home, path, env, server, database


def _start(args: list[str], home: Path, env: dict, log: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", *args],
        cwd=home,
        env=env,
        stdout=open(home / log, "wb"),  # noqa: SIM115 - closed with the process
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()


def test_backfill_and_nightly_job_through_the_daemon_on_postgres(deployment, monkeypatch):
    from dagster._grpc.client import DagsterGrpcClient
    from dagster_graphql import DagsterGraphQLClient

    home, path, env, server, database = deployment
    code_port, port = _free_port(), _free_port()
    workspace = home / "workspace.yaml"
    workspace.write_text(
        f"load_from:\n  - grpc_server:\n      host: 127.0.0.1\n      port: {code_port}\n"
        "      location_name: forecast\n"
    )
    code = _start(
        ["dagster", "api", "grpc", "-m", "forecast_assets.definitions", "-h", "127.0.0.1", "-p", str(code_port)],
        home, env, "code_server.log",
    )  # fmt: skip
    processes = [code]
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                DagsterGrpcClient(port=code_port, host="127.0.0.1").ping("up")
                break
            except Exception:  # noqa: BLE001 - still importing the definitions
                assert code.poll() is None and time.monotonic() < deadline, (
                    home / "code_server.log"
                ).read_text()
                time.sleep(1)
        webserver = _start(
            ["dagster_webserver", "-w", str(workspace), "-h", "127.0.0.1", "-p", str(port)],
            home, env, "webserver.log",
        )  # fmt: skip
        daemon = _start(["dagster._daemon", "run", "-w", str(workspace)], home, env, "daemon.log")
        processes += [webserver, daemon]
        client = DagsterGraphQLClient("127.0.0.1", port_number=port, timeout=30)
        deadline = time.monotonic() + 180
        while True:  # the webserver is still loading the code location
            try:
                launched = client._execute(
                    LAUNCH_BACKFILL,
                    {
                        "params": {
                            "partitionNames": BACKFILL,
                            "assetSelection": [{"path": ["daily_forecasts"]}],
                            "runConfigData": IN_PROCESS,
                        }
                    },
                )["launchPartitionBackfill"]
                break
            except Exception:  # noqa: BLE001
                if time.monotonic() > deadline or webserver.poll() is not None:
                    raise
                time.sleep(2)
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        backfill_id = launched["backfillId"]
        nightly_id = client.submit_job_execution(
            "nightly_job", tags={"dagster/partition": NIGHT}, run_config=IN_PROCESS
        )

        for key, value in env.items():  # this process reads the same instance from here on
            monkeypatch.setenv(key, value)
        with dg.DagsterInstance.get() as instance:
            deadline = time.monotonic() + 480
            while True:
                runs = instance.get_runs()
                backfill = instance.get_backfill(backfill_id)
                finished = backfill.status.value not in ("REQUESTED",) and all(r.status in DONE for r in runs)
                if (finished and len(runs) >= 2) or time.monotonic() > deadline:
                    break
                assert daemon.poll() is None, (home / "daemon.log").read_text()[-3000:]
                time.sleep(2)
            check_instance(instance, runs, backfill, nightly_id)
    finally:
        for proc in reversed(processes):
            _stop(proc)

    check_tables(server, database)
    check_warehouse(path)
    assert not list(home.rglob("*.db")), "an SQLite storage was created beside the Postgres one"


def check_instance(instance: dg.DagsterInstance, runs, backfill, nightly_id: str) -> None:
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

    assert isinstance(instance.run_storage, PostgresRunStorage)
    assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
    assert isinstance(instance.schedule_storage, PostgresScheduleStorage)

    assert backfill.status.value == "COMPLETED_SUCCESS", backfill.status
    by_id = {r.run_id: r for r in runs}
    backfill_runs = [r for r in runs if r.tags.get("dagster/backfill") == backfill.backfill_id]
    assert len(backfill_runs) == 1  # single-run backfill policy: the range is one run
    assert {r.status for r in runs} == {dg.DagsterRunStatus.SUCCESS}, {r.run_id: r.status for r in runs}
    assert by_id[nightly_id].job_name == "nightly_job"

    # Both went through the run queue: enqueued, then launched by the daemon.
    for run in [by_id[nightly_id], *backfill_runs]:
        types = {e.dagster_event.event_type for e in instance.all_logs(run.run_id) if e.is_dagster_event}
        assert {dg.DagsterEventType.RUN_ENQUEUED, dg.DagsterEventType.RUN_STARTING} <= types, run.job_name

    # The pool: one slot, and no two warehouse-writing steps (every step here) ever overlapped.
    assert instance.event_log_storage.get_concurrency_info("warehouse_write").slot_count == 1
    intervals = []
    for run in runs:
        start = {}
        for e in instance.all_logs(run.run_id):
            kind = e.dagster_event.event_type if e.is_dagster_event else None
            if kind == dg.DagsterEventType.STEP_START:
                start[e.step_key] = e.timestamp
            elif kind in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE):
                intervals.append((start[e.step_key], e.timestamp, run.run_id, e.step_key))
    intervals.sort()
    assert len(intervals) >= 5  # nightly: 4 steps, backfill: 1
    overlaps = [(a, b) for a, b in zip(intervals, intervals[1:]) if b[0] < a[1]]
    assert not overlaps, overlaps
    assert len({r for _, _, r, _ in intervals}) == 2

    # Materializations per partition, and every check result, from the event log in PostgreSQL.
    def partitions(asset: str) -> set[str | None]:
        records = instance.fetch_materializations(dg.AssetKey(asset), limit=100).records
        return {r.partition_key for r in records if r.run_id in by_id}

    assert partitions("daily_forecasts") == {*BACKFILL, NIGHT}
    assert partitions("raw_prices") == {NIGHT}
    assert partitions("features") == {None} and partitions("forecast_scores") == {None}
    evaluations = [
        e.dagster_event.asset_check_evaluation_data
        for run in runs
        for e in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    ]
    names = sorted(ev.check_name for ev in evaluations)
    assert all(ev.passed for ev in evaluations), [(ev.check_name, ev.passed) for ev in evaluations]
    # raw_prices' price checks (nightly) and daily_forecasts' checks in both runs.
    assert {"no_duplicate_sessions", "no_missing_sessions", "positive_prices"} <= set(names)
    assert names.count("complete_forecasts") == 2 and names.count("quantiles_ordered") == 2


def check_tables(server: postgres.Server, database: str) -> None:
    """The same facts, read with SQL from Dagster's own tables in the database."""
    con = server.connect(database)
    try:
        with con.cursor() as cur:
            cur.execute("SELECT status, count(*) FROM runs GROUP BY status")
            assert dict(cur.fetchall()) == {"SUCCESS": 2}
            cur.execute(
                "SELECT count(*) FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION'"
                " AND asset_key = %s",
                ['["daily_forecasts"]'],
            )
            assert cur.fetchone()[0] == 3
            cur.execute("SELECT count(*) FROM event_logs WHERE dagster_event_type = 'ASSET_CHECK_EVALUATION'")
            assert cur.fetchone()[0] >= 8
            cur.execute("SELECT count(*) FROM bulk_actions")
            assert cur.fetchone()[0] == 1
            cur.execute("SELECT concurrency_key, count(*) FROM concurrency_slots GROUP BY 1")
            assert dict(cur.fetchall()) == {"warehouse_write": 1}
    finally:
        con.close()


def check_warehouse(path: Path) -> None:
    rows = read_sql(
        "SELECT as_of_date, count(*) AS n FROM forecasts WHERE as_of_date >= ? GROUP BY ALL ORDER BY ALL",
        [dt.date(2022, 12, 23)],
        path,
    )
    assert rows.rows() == [(dt.date.fromisoformat(d), 4) for d in (*BACKFILL, NIGHT)]
