"""Every price-source test runs with no stale yfinance errors and a fixed exchange "today"."""

from __future__ import annotations

import pytest
import yfinance.shared

from forecast_core import sources
from tests.support.sources import TODAY


@pytest.fixture(autouse=True)
def _isolated_yfinance_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(yfinance.shared, "_ERRORS", {})


@pytest.fixture(autouse=True)
def _fixed_today(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources.validation, "exchange_today", lambda: TODAY)
