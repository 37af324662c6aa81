"""The reliability section of docs/reliability.md, from a run of the reliability suite.

    .venv/bin/python -m tests.reliability.report [--docs docs/] [--from FILE]

Runs `pytest -m reliability` (serially, in a subprocess, with $RELIABILITY_LEDGER set), saves the
counts the tests recorded (tests/reliability/ledger.py) to tests/reliability/report.json, prints
the section as Markdown and, with --docs, writes it between the page's
`<!-- reliability:start -->` and `<!-- reliability:end -->` markers
(`forecast_assets.doc_sections`). `--from FILE` renders a saved run instead of running the suite.
Every number in the section comes from this command.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

from forecast_assets.doc_sections import add_docs_argument, check_sections, write_sections

ROOT = Path(__file__).resolve().parents[2]
SAVED = Path(__file__).with_name("report.json")


def run_suite(target: Path) -> dict:
    env = {**os.environ, "RELIABILITY_LEDGER": str(target)}
    command = [sys.executable, "-m", "pytest", "-m", "reliability", "-q", "-p", "no:cacheprovider"]
    done = subprocess.run(command, cwd=ROOT, env=env)
    result = json.loads(target.read_text())
    result["machine"] = f"{os.cpu_count()} CPU cores, {platform.system()} {platform.machine()}"
    if done.returncode != 0:
        raise SystemExit(f"the reliability suite failed (exit {done.returncode}); the docs were not changed")
    return result


def markdown(result: dict) -> str:
    c = result["counts"]
    tests = result["tests"]
    losses = {k: v for k, v in c.items() if k.startswith("losses_")}
    loss_names = ", ".join(k.removeprefix("losses_").replace("_", " ") for k in sorted(losses))
    rows = [
        (
            "provider faults simulated through the `raw_prices` asset (connection error, rate limit, timeout, "
            "empty frame, missing or delisted ticker, NaN rows, bad prices, duplicated or unsorted dates, "
            "time zones, column layouts, a split that rewrites history, late sessions)",
            c.get("faults_simulated", 0),
        ),
        ("  retries of transient faults by the asset's retry policy", c.get("transient_retries", 0)),
        (
            "  failed runs followed by a good run that stored exactly the source's prices",
            c.get("recoveries", 0),
        ),
        (
            "bad inputs tried (configuration, sources, warehouse, model), each failing before any write",
            c.get("bad_inputs_tried", 0),
        ),
        (
            "SIGKILLs of a process writing raw_prices and forecasts in one transaction",
            c.get("crash_trials", 0),
        ),
        ("  of which landed inside a write", c.get("crash_kills_mid_write", 0)),
        ("queries by a reader process on the read replica during a pipeline run", c.get("reader_queries", 0)),
        ("  replica snapshots it saw published", c.get("reader_snapshots_seen", 0)),
        (
            "re-runs compared with the first run (whole-warehouse content digests; a backfill against one by one)",
            c.get("idempotency_reruns", 0),
        ),
        ("Python files checked for SQL built from values", c.get("security_files_scanned", 0)),
        (
            "hostile tickers and paths rejected (quotes, semicolons, separators, control characters)",
            c.get("security_hostile_names_rejected", 0),
        ),
        ("repository files scanned for secrets", c.get("security_files_scanned_for_secrets", 0)),
        (f"**losses observed** ({loss_names})", sum(losses.values())),
    ]
    table = "\n".join(
        [
            "| what | count |",
            "|---|---:|",
            *(f"| {what.replace('  ', '&nbsp;&nbsp;')} | {n} |" for what, n in rows),
        ]
    )
    return f"""Every number here comes from `.venv/bin/python -m tests.reliability.report --docs docs/`,
which runs `pytest -m reliability` and writes this section. Last run: {tests["passed"]} tests passed,
{tests["failed"]} failed, in {result["seconds"]:.0f} s on {result.get("machine", "this machine")}. To rerun
the tests alone: `pytest -m reliability` (each test asserts its guarantee; the losses must be 0).

{table}

**Reading while the job writes: the read replica.** DuckDB lets one process write a file, and
while it does no other process may open it, not even read-only. So tools, notebooks and dashboards
read `warehouse/forecast.read.duckdb` (for a warehouse `X.duckdb`, `X.read.duckdb` beside it),
never the warehouse itself. It is a link to one of two slot files (`X.read.0.duckdb`,
`X.read.1.duckdb`), each a complete database. Every committed write logs the slices it replaced;
after the commit the job, still holding its write lock, copies only those rows into the slot the
link does not name (one transaction on that slot; a slot a reader still holds is skipped for
another), checkpoints it and swaps the link to it with `os.replace` (atomic). So a publication
costs what the write changed, not the warehouse's size (numbers in
[performance.md](performance.md)). A reader sees one committed state of every table, never a
half-written partition; the job never waits for a reader and a reader never waits for the job. A
connection keeps the snapshot it opened, so open one per query (or reconnect) to see newer data
(`connect_replica` also retries the rare open that races two publications:
`warehouse/replica.py` explains it):

```python
import duckdb

with duckdb.connect("warehouse/forecast.read.duckdb", read_only=True) as con:
    print(con.sql("FROM latest_forecasts"))
# or: from warehouse.replica import read_replica_sql; read_replica_sql("FROM latest_forecasts")
```

`python -m warehouse.replica` publishes the replica on demand (`--seed` rebuilds a slot from a
copy of the whole warehouse, for a warehouse written before it existed). Opening the warehouse itself read-only still works when no run is writing; while one is,
the open waits (retrying for up to two minutes), which is what the job's own steps do.

**Provider faults.** Connection errors, timeouts and rate limits (raised, or logged by yfinance)
are transient: `raw_prices` raises `TransientSourceError` and its retry policy retries it up to 4
times (15 s, 45 s, 105 s, 225 s, plus or minus 15 s). Anything else the job raises on purpose (bad
data, a bad setting, an unusable warehouse) fails at once with the ticker and date, setting or path
named, and nothing written: a failed run leaves the warehouse file byte for byte as it was. Every
session of the run's range must be there for every ticker before anything is written, so a session
the provider has not published yet ("KO 2022-12-16") fails the run; the next run, once it is
published, stores it. Unsorted dates, time-zone-aware indexes and the column layouts of one-ticker
downloads are normalised. A split rewrites history: the provider now reports every earlier price
divided by the ratio. The job stores the range as delivered, and the blocking check
`history_matches_source` downloads the 5 stored sessions before the batch again: a change of a
price by an absolute log ratio above 0.05 (a split, a restatement) fails it and stops features and
forecasts from mixing two price scales; smaller revisions (dividends move past adjusted closes) warn. The remedy is to
re-materialize `raw_prices` over the stored range (one run), which replaces the history.

**Crash safety.** Each step writes all its tables in one DuckDB transaction, replacing its slice;
DuckDB's write-ahead log makes a commit all or nothing. After a SIGKILL at any moment (connecting,
deleting, inserting, committing, checkpointing, publishing the replica), the warehouse opens and holds
the old or the new version of the partition in every table, the replica is one consistent version
too (possibly the previous one until the next write), and a re-run completes.

**Idempotency and reproducibility.** Re-running any partition leaves every table identical except
the audit timestamps (`ingested_at`, `created_at`, `scored_at`, `trained_at`) and a model's
training wall time; a retrained month keeps its `model_version` and `artifact_sha256`. The asset
check `forecasts_reproducible` on `daily_forecasts` recomputes the latest session's forecasts from
the stored model artifact and compares them bit for bit (exact on the device that trained the
model); it runs with every materialization of `daily_forecasts` (one session, about a second), and
on demand from the UI (the asset's Checks tab, "Execute").

**Security.** No SQL is built from values: an AST test checks that every SQL argument in the
project's code is a constant or built only from allow-listed identifiers (table names checked
against the writable and readable lists), and values are bound as `?` parameters. Tickers must
match `^\\^?[A-Z0-9][A-Z0-9.\\-=]{{0,14}}$`, file paths (settings and `FORECAST_WAREHOUSE`) letters,
digits, spaces and `. , + @ ~ : / \\ ( ) _ -`; anything else (quotes, semicolons, newlines) is a
`ConfigError` before anything is read. The repository holds no credentials (a test scans every
file), the job needs none for its sources, and provider error messages are stripped of session
tokens and URL credentials before they reach the run's logs."""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_docs_argument(parser)
    parser.add_argument("--from", dest="source", type=Path, help="render this saved run instead of running")
    args = parser.parse_args(argv)
    if args.docs:
        check_sections(args.docs, ["reliability"])  # before the suite's minutes, not after
    if args.source:
        result = json.loads(args.source.read_text())
    else:
        result = run_suite(SAVED)
        SAVED.write_text(json.dumps(result, indent=2) + "\n")
    section = markdown(result)
    print(section)
    if args.docs:
        write_sections(args.docs, {"reliability": section})


if __name__ == "__main__":
    main()
