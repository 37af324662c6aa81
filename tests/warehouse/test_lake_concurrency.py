"""Many writers and readers on one DuckLake warehouse at once (`warehouse.lake`), in separate
processes, with no lock, no pool and no replica between them.

- Two writers commit 15 transactions each, every one replacing the writer's own slices of
  raw_prices and forecasts (as a step's write does), while two readers check, each round in one
  snapshot, that every slice is one whole version: on a SQLite and on a PostgreSQL catalog.
- A backfill (daily_forecasts over 15 sessions, re-run) and the nightly job (two nights: prices,
  features, forecasts, scores) run at the same time in two processes while two readers query the
  pipeline's tables and views: no error, never half a partition, no key twice, nothing lost (every
  expected partition whole, the scores those of a serial re-run).

Conflicting commits (two transactions writing one table) are replayed by the writers
(`warehouse.lake.commit`); the tests count them. Runs in .venv-ducklake (`make test-ducklake`).
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from forecast_core.data import calendar
from tests.support.config import PROCESS_TOML
from tests.support.lake import KEYS, KINDS, duplicates, new_lake, requires_ducklake, slice_frames
from warehouse import connect, read_sql, transaction

pytestmark = [pytest.mark.slow, requires_ducklake]

ROOT = Path(__file__).resolve().parents[2]
WRITERS, TRANSACTIONS, READERS = 2, 15, 2


def _spawn(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.support.lake", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen, timeout: float) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return out


def _summary(readers: list[dict]) -> dict:
    return {
        k: sum(r[k] for r in readers) for k in ("queries", "rounds", "snapshots", "n_errors", "n_anomalies")
    }


@pytest.mark.parametrize("kind", KINDS)
def test_two_writers_replacing_their_slices_while_two_readers_read(tmp_path, kind):
    settings = str(new_lake(tmp_path / "lake", kind))
    with transaction(settings) as w:  # the schema and version 0 of every slice
        for writer in range(WRITERS):
            prices, forecasts = slice_frames(writer, 0)
            w.replace("raw_prices", prices, "FALSE")
            w.replace("forecasts", forecasts, "FALSE")
    stop = tmp_path / "stop"
    readers = [_spawn("slice-reader", settings, str(WRITERS), str(stop)) for _ in range(READERS)]
    writers = [_spawn("slice-writer", settings, str(w), str(TRANSACTIONS)) for w in range(WRITERS)]
    try:
        wrote = [json.loads(_finish(w, 600)) for w in writers]
        time.sleep(0.5)  # a last round on the final snapshot
    finally:
        stop.touch()
    seen = [json.loads(_finish(r, 120)) for r in readers]
    total = _summary(seen)
    print(f"\nDuckLake ({kind} catalog) slices:", json.dumps({"writers": wrote, "readers": total}))
    assert [w["errors"] for w in wrote] == [[]] * WRITERS
    assert total["n_errors"] == 0, [r["errors"] for r in seen]
    assert total["n_anomalies"] == 0, [r["anomalies"] for r in seen]
    assert total["rounds"] >= 10 and total["snapshots"] >= 3, total
    # Nothing lost, nothing twice: each writer's last version, whole.
    with connect(settings, read_only=True) as con:
        for w in range(WRITERS):
            prices, forecasts = slice_frames(w, TRANSACTIONS)
            for table, frame, columns in (
                ("raw_prices", prices, ["ticker", "date", "close", "source"]),
                ("forecasts", forecasts, ["ticker", "as_of_date", "model_version", "pred_close"]),
            ):
                stored = con.execute(
                    f"SELECT {', '.join(columns)} FROM {table} WHERE list_contains(?, ticker) ORDER BY ALL",
                    [frame["ticker"].unique().to_list()],
                ).fetchall()
                assert stored == sorted(frame.select(columns).rows()), (table, w)
        assert duplicates(con, "raw_prices") == 0 and duplicates(con, "forecasts") == 0


# --- the pipeline: a backfill and the nightly job at once ------------------------------------------

N_TICKERS, N_PRICE_TICKERS, N_HORIZONS = 2, 3, 2
PREPARED_UNTIL = "2022-12-22"
BACKFILL = ("2022-12-01", "2022-12-22")  # re-run: every forecast of these sessions replaced
NIGHTS = ("2022-12-23", "2022-12-27")


def _range(start: str, end: str) -> dict[str, str]:
    return {"dagster/asset_partition_range_start": start, "dagster/asset_partition_range_end": end}


def _scores(settings: str):
    return read_sql(
        "SELECT * EXCLUDE (scored_at) FROM forecast_scores ORDER BY as_of_date, ticker, horizon",
        path=settings,
    )


def test_a_backfill_and_the_nightly_job_write_at_once_while_readers_query(tmp_path):
    from forecast_assets.definitions import build_defs

    settings = str(new_lake(tmp_path / "lake", "postgres"))
    config = tmp_path / "tiny.toml"
    config.write_text(PROCESS_TOML)
    defs = build_defs(str(config), settings)
    for asset, tags, partition_key in [
        ("raw_prices", _range("2022-12-01", PREPARED_UNTIL), None),
        ("features", {}, None),
        ("lstm_model", {}, "2022-12-01"),
        ("daily_forecasts", _range("2022-12-01", PREPARED_UNTIL), None),
        ("forecast_scores", {}, None),
    ]:
        result = dg.materialize(
            defs.assets, selection=[asset], resources=defs.resources, tags=tags, partition_key=partition_key
        )
        assert result.success

    stop = tmp_path / "stop"
    readers = [
        _spawn("reader", settings, str(N_TICKERS), str(N_PRICE_TICKERS), str(N_HORIZONS), str(stop))
        for _ in range(READERS)
    ]
    # The backfill of daily_forecasts, five times over (so that it spans the nights), and two nights.
    backfill = _spawn(
        "job", settings, str(config), "assets:daily_forecasts", *[f"{BACKFILL[0]}..{BACKFILL[1]}"] * 5
    )
    nightly = _spawn("job", settings, str(config), "nightly_job", *NIGHTS)
    try:
        runs = [json.loads(line) for p in (backfill, nightly) for line in _finish(p, 900).splitlines()]
        time.sleep(0.5)
    finally:
        stop.touch()
    seen = [json.loads(_finish(r, 120)) for r in readers]
    total = _summary(seen)

    assert all(r["success"] and r["checks_passed"] for r in runs), json.dumps(
        [r["failed_checks"] for r in runs]
    )
    backfills = [r for r in runs if r["job"] == "assets:daily_forecasts"]
    nights = [r for r in runs if r["job"] == "nightly_job"]
    # The two writing processes overlapped in time.
    assert min(r["ended"] for r in backfills + nights) > max(backfills[0]["began"], nights[0]["began"])
    replays = backfills[-1]["replays"] + nights[-1]["replays"]

    sessions = calendar.sessions(dt.date(2019, 1, 2), dt.date.fromisoformat(NIGHTS[-1]))
    forecast_sessions = calendar.sessions(
        dt.date.fromisoformat(BACKFILL[0]), dt.date.fromisoformat(NIGHTS[-1])
    )
    with connect(settings, read_only=True) as con:
        price_days = dict(con.execute("SELECT date, count(*) FROM raw_prices GROUP BY ALL").fetchall())
        forecast_days = dict(
            con.execute("SELECT as_of_date, count(*) FROM forecasts GROUP BY ALL").fetchall()
        )
        duplicated = {table: duplicates(con, table) for table in KEYS}
    lost = sum(N_PRICE_TICKERS - price_days.get(d, 0) for d in sessions) + sum(
        N_TICKERS * N_HORIZONS - forecast_days.get(d, 0) for d in forecast_sessions
    )
    scores = _scores(settings)
    rerun = dg.materialize(defs.assets, selection=["forecast_scores"], resources=defs.resources)
    assert rerun.success
    scores_lost = (
        _scores(settings).join(scores, on=list(KEYS["forecast_scores"].split(", ")), how="anti").height
    )

    report = {
        "writers": 2,
        "runs": len(runs),
        "replayed_commits": replays,
        "reader_queries": total["queries"],
        "reader_snapshots": total["snapshots"],
        "reader_errors": total["n_errors"],
        "half_partitions_seen": total["n_anomalies"],
        "rows_lost": lost + scores_lost,
        "keys_duplicated": sum(duplicated.values()),
        "seconds": [(r["job"], r["start"], r["seconds"]) for r in runs],
    }
    print("\nDuckLake (postgres catalog) backfill + nightly:", json.dumps(report))
    assert total["n_errors"] == 0, [r["errors"] for r in seen]
    assert total["n_anomalies"] == 0, [r["anomalies"] for r in seen]
    assert total["queries"] >= 1000, total
    assert set(price_days.values()) == {N_PRICE_TICKERS} and lost == 0, report
    assert set(forecast_days) == set(forecast_sessions)
    assert scores_lost == 0 and _scores(settings).equals(scores), report
    assert sum(duplicated.values()) == 0, duplicated
