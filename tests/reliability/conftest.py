"""The reliability suite: every test in this folder carries the `reliability` marker, so that
`pytest -m reliability` runs them (with the two lock tests of tests/warehouse/test_db.py).

Tests count what they tried and what they saw in `ledger.LEDGER`. With $RELIABILITY_LEDGER set to a
file path, the counts are written there as JSON when the session ends;
`python -m tests.reliability.report` does that and renders the README's Reliability section.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import dagster as dg
import pytest
import yfinance
import yfinance.shared

from tests.reliability.ledger import LEDGER
from tests.support.pipeline import checks_passed, materialize
from tests.support.yahoo import SEED, FakeYahoo, defs_for, truth

HERE = Path(__file__).parent
_STARTED = time.monotonic()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.reliability)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    target = os.environ.get("RELIABILITY_LEDGER")
    if not target or hasattr(session.config, "workerinput"):  # xdist workers would overwrite it
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    stats = getattr(reporter, "stats", {}) if reporter else {}
    Path(target).write_text(
        json.dumps(
            {
                "counts": dict(sorted(LEDGER.items())),
                "tests": {k: len(stats.get(k, [])) for k in ("passed", "failed", "error", "skipped")},
                "seconds": round(time.monotonic() - _STARTED, 1),
                "exitstatus": int(exitstatus),
            },
            indent=2,
        )
        + "\n"
    )


# --- the provider scenarios (test_provider_faults.py, test_security.py) --------------------------

_REAL_DELAY = dg.RetryPolicy.calculate_delay


@pytest.fixture
def retry_delays(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """No stale yfinance errors; the retry policy's delays recorded instead of slept."""
    monkeypatch.setattr(yfinance.shared, "_ERRORS", {})
    delays: list[float] = []

    def no_wait(policy: dg.RetryPolicy, attempt_num: int) -> float:
        delays.append(_REAL_DELAY(policy, attempt_num))
        return 0

    monkeypatch.setattr(dg.RetryPolicy, "calculate_delay", no_wait)
    return delays


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A warehouse with every ticker's prices from HISTORY_START to SEED's end, ingested through
    the asset (the partition range SEED, and the new tickers' history in the same run)."""
    directory = tmp_path_factory.mktemp("seed")
    mp = pytest.MonkeyPatch()
    mp.setattr(yfinance, "download", FakeYahoo(truth()))
    try:
        result = materialize(["raw_prices"], defs_for(directory), start=SEED[0], end=SEED[1])
    finally:
        mp.undo()
    assert result.success and checks_passed(result)
    return directory / "w.duckdb"
