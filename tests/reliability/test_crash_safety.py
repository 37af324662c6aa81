"""SIGKILL in the middle of warehouse writes: a child process rewrites one partition of raw_prices
and forecasts in one transaction, over and over (`crash_writer.py`), and is killed at a random
moment, trial after trial (inside the DELETE, the INSERT, the COMMIT, the checkpoint, the copy of
the read replica...). After each kill the warehouse opens, both tables hold the same version of
the partition, old or new, never a mix, the history outside it is untouched, and the read replica
(if published) is one consistent version too. A last, unkilled write completes and publishes.

The same trials run on each backend: the DuckDB file, and DuckLake with its catalog in SQLite and
in PostgreSQL (`warehouse.lake`; in .venv-ducklake, skipped elsewhere), where a kill can land in the
extension's attach, the Parquet writes or the catalog's commit, and there is no replica. A DuckLake
write takes longer (attach, files, catalog), so its kills are spread over a longer window.
"""

from __future__ import annotations

import hashlib
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from tests.reliability import crash_writer
from tests.reliability.ledger import record
from tests.support.lake import new_lake, requires_ducklake
from warehouse import connect
from warehouse.replica import replica_path

pytestmark = pytest.mark.slow  # like tests/assets/test_pipeline.py: `-m "not slow"` skips it

ROOT = Path(__file__).resolve().parents[2]
TRIALS = 32
MAX_DELAY_S = 0.45
SPAN = [crash_writer.PARTITION[0], crash_writer.PARTITION[-1]]


def digest(con: duckdb.DuckDBPyConnection, sql: str, params: list) -> str:
    return hashlib.sha256(repr(con.execute(sql, params).fetchall()).encode()).hexdigest()


def state(con: duckdb.DuckDBPyConnection) -> tuple[str, str, str]:
    """Digests of (the partition in raw_prices, the partition in forecasts, the history)."""
    return (
        digest(con, "SELECT * FROM raw_prices WHERE date BETWEEN ? AND ? ORDER BY ALL", SPAN),
        digest(con, "SELECT * FROM forecasts WHERE as_of_date BETWEEN ? AND ? ORDER BY ALL", SPAN),
        digest(con, "SELECT * FROM raw_prices WHERE date < ? ORDER BY ALL", SPAN[:1]),
    )


def version_of(found: tuple[str, str, str], expected: dict[int, tuple[str, str, str]]) -> int | None:
    """The version both tables hold, or None for a mix (or a damaged history)."""
    return next((v for v, s in expected.items() if s == found), None)


#: backend -> (a new warehouse in a directory, the window the kills are spread over in seconds,
#: the trials: fewer on DuckLake, whose trials take longer).
BACKENDS = {
    "duckdb": (lambda d, name: d / f"{name}.duckdb", MAX_DELAY_S, TRIALS),
    "ducklake-sqlite": (lambda d, name: new_lake(d / name, "sqlite"), 2.5, 16),
    "ducklake-postgres": (lambda d, name: new_lake(d / name, "postgres"), 2.5, 16),
}


def _first_write_s(path) -> float:
    """Seconds from a crash writer child's `begin` to its first `commit` on `path` (then killed)."""
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.reliability.crash_writer", str(path), "1"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout.readline().strip() == "ready", child.stderr.read()
    assert child.stdout.readline().startswith("begin")
    started = time.monotonic()
    assert child.stdout.readline().startswith("commit"), child.stderr.read()
    seconds = time.monotonic() - started
    child.send_signal(signal.SIGKILL)
    child.wait()
    return seconds


@pytest.mark.parametrize(
    "backend",
    [pytest.param(b, marks=[requires_ducklake] if b.startswith("ducklake") else []) for b in BACKENDS],
)
def test_sigkill_during_writes_leaves_the_old_or_the_new_partition(tmp_path: Path, backend: str) -> None:
    new, max_delay_s, trials = BACKENDS[backend]
    lake = backend != "duckdb"
    reference = new(tmp_path, "reference")
    crash_writer.seed(str(reference))
    expected = {}
    for v in (0, 1):
        started = time.monotonic()
        crash_writer.write(str(reference), v)
        write_s = time.monotonic() - started
        with connect(reference, read_only=True) as con:
            expected[v] = state(con)
    if lake:  # a busy machine slows a DuckLake write (attach, files, catalog): widen the window
        max_delay_s += 4 * write_s
    assert expected[0] != expected[1]

    path = new(tmp_path, "w")
    crash_writer.seed(str(path))
    # The window spans a few of the child's own first writes (a new process's, slower than the
    # warm one above): on a slow machine a write can outlast the whole window, and then every
    # kill lands in the child's first write and no commit is ever seen.
    max_delay_s = max(max_delay_s, 3 * _first_write_s(path))
    with connect(path, read_only=True) as con:
        current = version_of(state(con), expected)
    rng = random.Random(20221216)
    outcomes, mid_write = [], 0
    for _ in range(trials):
        child = subprocess.Popen(
            [sys.executable, "-m", "tests.reliability.crash_writer", str(path), str(1 - current)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert child.stdout.readline().strip() == "ready", child.stderr.read()
        time.sleep(rng.uniform(0.0, max_delay_s))
        child.send_signal(signal.SIGKILL)
        child.wait()
        said = child.stdout.read().split("\n")
        said = [line for line in said if line]
        mid_write += bool(said) and said[-1].startswith("begin")
        record("crash_trials")

        with connect(path, read_only=True) as con:  # opens (replaying the WAL), or the test fails
            found = version_of(state(con), expected)
        replica_version = 0
        if not lake and replica_path(path).exists():
            with duckdb.connect(str(replica_path(path)), read_only=True) as con:
                replica_version = version_of(state(con), expected)
        lost = found is None or replica_version is None
        record("losses_mixed_state", int(lost))
        assert not lost, (
            f"a mix after a kill: warehouse {found}, replica {replica_version}; child said {said[-3:]}"
        )
        outcomes.append(found)
        current = found

    record("crash_kills_mid_write", mid_write)
    # Kills landed inside writes, and both outcomes (rolled back, committed) happened.
    assert mid_write >= trials // 2 and set(outcomes) == {0, 1}, (mid_write, outcomes)

    crash_writer.write(str(path), 1 - current)  # a re-run completes, and publishes
    with connect(path, read_only=True) as con:
        assert version_of(state(con), expected) == 1 - current
    if not lake:
        with duckdb.connect(str(replica_path(path)), read_only=True) as con:
            assert version_of(state(con), expected) == 1 - current
