"""Reading while the job writes: the documented way is the read replica (`warehouse.replica`).

A reader process queries `<warehouse>.read.duckdb` in a loop (counts per partition,
latest_forecasts, models against their artifacts) while this process runs the whole pipeline on
the tiny configuration (the sequence of `tests.support.pipeline.run_pipeline`, with its helpers:
prices from 2018, features, folds, the walk-forward evaluation, December's model, forecasts,
scores, explanations), then re-runs partitions (a re-run replaces rows: the moment a reader could
see half a partition). The reader sees no error and never a half-written partition; no step of
the job fails or waits on a lock.

Reading the warehouse file itself read-only is what the job's own steps do: such an open waits
(retrying) while a writer holds the file, which is also checked here.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from tests.reliability.ledger import record
from tests.support.config import TINY_CONFIG, with_overrides, write_config
from tests.support.pipeline import (
    DECEMBER,
    HORIZONS,
    LAST_SESSION,
    PERIOD_START,
    PRICES_START,
    TICKERS,
    defs_on,
    materialize,
)
from tests.support.warehouse import hold_lock
from warehouse import connect, ensure_schema
from warehouse.db import WarehouseError
from warehouse.replica import replica_path

pytestmark = pytest.mark.slow  # like tests/assets/test_pipeline.py: `-m "not slow"` skips it

ROOT = Path(__file__).resolve().parents[2]


def test_a_reader_sees_only_whole_partitions_during_a_pipeline_run(tmp_path: Path) -> None:
    warehouse, stop = tmp_path / "w.duckdb", tmp_path / "stop"
    defs = defs_on(
        warehouse,
        write_config(tmp_path / "tiny.toml", with_overrides(TINY_CONFIG, {"promotion_tolerance": 10.0})),
    )
    reader = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.reliability.reader",
            str(warehouse),
            str(len(TICKERS)),
            str(len(HORIZONS)),
            str(stop),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        runs = [
            materialize(["raw_prices"], defs, start=PRICES_START, end=LAST_SESSION),
            materialize(["features"], defs),
            materialize(["walk_forward_folds"], defs),
            materialize(["fold_evaluation"], defs),
            materialize(["lstm_model"], defs, partition_key=PERIOD_START.isoformat()),
            materialize(["daily_forecasts"], defs, start=DECEMBER[0], end=DECEMBER[-1]),
            materialize(["forecast_scores"], defs),
            materialize(["forecast_explanations"], defs, start=DECEMBER[-3], end=DECEMBER[-1]),
            # Re-runs replace partitions under the reader's feet.
            materialize(["raw_prices", "features"], defs, partition_key="2022-12-15"),
            materialize(["daily_forecasts", "forecast_scores"], defs, start=DECEMBER[0], end=DECEMBER[-1]),
        ]
        time.sleep(0.3)  # a last round on the final snapshot
    finally:
        stop.touch()
        out, err = reader.communicate(timeout=60)
    assert all(r.success for r in runs)  # materialize raises otherwise: no step failed on a lock
    assert reader.returncode == 0, err
    seen = json.loads(out)
    record("reader_queries", seen["queries"])
    record("reader_snapshots_seen", seen["snapshots"])
    record("losses_reader_errors", seen["n_errors"])
    record("losses_half_written_partitions_seen", seen["n_anomalies"])
    assert seen["n_errors"] == 0, seen["errors"]
    assert seen["n_anomalies"] == 0, seen["anomalies"]
    # It read throughout the run: many queries, over many published snapshots.
    assert seen["queries"] > 200 and seen["snapshots"] >= 5, seen

    # The replica is the last committed state.
    queries = (
        "SELECT count(*), max(as_of_date) FROM forecasts",
        "SELECT count(*) FROM raw_prices",
        "SELECT model_version, artifact_sha256 FROM models ORDER BY ALL",
    )
    with connect(warehouse, read_only=True) as con:
        main = [con.execute(q).fetchall() for q in queries]
    with duckdb.connect(str(replica_path(warehouse)), read_only=True) as con:
        assert [con.execute(q).fetchall() for q in queries] == main


def test_a_read_only_open_waits_for_the_writer_then_reads(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    with connect(path) as con:
        ensure_schema(con)
    child = hold_lock(path, 30)
    try:
        with pytest.raises(WarehouseError, match="locked by another process"):
            with connect(path, read_only=True, lock_timeout_s=0.2):
                pass
    finally:
        child.kill()
        child.wait()
    child = hold_lock(path, 1.0)
    try:
        start = time.monotonic()
        with connect(path, read_only=True, lock_timeout_s=10) as con:
            assert con.execute("SELECT count(*) FROM held_by_child").fetchone() == (0,)
        assert time.monotonic() - start > 0.3
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
