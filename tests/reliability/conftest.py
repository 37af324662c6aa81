"""The reliability suite: every test in this folder carries the `reliability` marker, so that
`pytest -m reliability` runs them (with the two lock tests of tests/test_warehouse.py).

Tests count what they tried and what they saw in `ledger.LEDGER`. With $RELIABILITY_LEDGER set to a
file path, the counts are written there as JSON when the session ends;
`python -m tests.reliability.report` does that and renders the README's Reliability section.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tests.reliability.ledger import LEDGER

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
