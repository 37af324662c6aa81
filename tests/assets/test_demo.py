"""The demo's words when something is wrong before or during a run: the reason first, on the
terminal, without a traceback (the traceback, if any, goes to the log file)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from forecast_assets.definitions import build_defs, source_last_date
from forecast_core.config import load_config
from tests.support.config import write_config

ROOT = Path(__file__).resolve().parents[2]


def _ambiguous_file(tmp_path: Path) -> Path:
    prices = tmp_path / "prices.csv"
    prices.write_text("date,ticker,close\n01/04/1999,AAA,10.0\n01/05/1999,AAA,10.5\n")
    return write_config(
        tmp_path / "file.toml",
        {
            "source": {"kind": "file", "path": str(prices), "start_date": "1999-01-04"},
            "universe": {"tickers": ["AAA"], "exogenous": []},
        },
    )


def test_a_file_with_ambiguous_dates_ends_the_demo_with_the_reason(tmp_path):
    config = _ambiguous_file(tmp_path)
    env = os.environ | {
        "DAGSTER_HOME": str(tmp_path),
        "FORECAST_CONFIG": str(config),
        "FORECAST_WAREHOUSE": str(tmp_path / "w.duckdb"),
        "PYTHONPATH": str(ROOT),
    }
    (tmp_path / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    done = subprocess.run(
        [sys.executable, "-m", "forecast_assets.demo"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1
    assert (
        "FAILED before any run" in done.stdout and "01/04/1999" in done.stdout and "YYYY-MM-DD" in done.stdout
    )
    assert "Traceback" not in done.stdout + done.stderr


def test_a_file_that_cannot_be_read_still_loads_the_definitions(tmp_path):
    """The code location loads (partitions to today); the first raw_prices run will name the file."""
    config = _ambiguous_file(tmp_path)
    assert source_last_date(load_config(config)) is None
    defs = build_defs(str(config), str(tmp_path / "w.duckdb"))
    assert defs.resolve_job_def("ingest_job").partitions_def.get_first_partition_key() == "1999-01-04"
