"""`make_source`: the configured source kind gives that source, behind the one interface."""

from __future__ import annotations

from pathlib import Path

from forecast_core.config import config_from_dict
from forecast_core.sources import (
    FileSource,
    PriceSource,
    SampleSource,
    YFinanceSource,
    make_source,
)  # fmt: skip

# --- make_source ----------------------------------------------------------------------------------


def test_make_source_follows_config(tmp_path: Path) -> None:
    assert isinstance(make_source(config_from_dict({})), SampleSource)
    yf_source = make_source(config_from_dict({"source": {"kind": "yfinance", "timeout_s": 5.0}}))
    assert isinstance(yf_source, YFinanceSource) and yf_source.timeout_s == 5.0
    path = str(tmp_path / "p.csv")
    file_source = make_source(config_from_dict({"source": {"kind": "file", "path": path}}))
    assert isinstance(file_source, FileSource) and str(file_source.path) == path
    made = (make_source(config_from_dict({})), yf_source, file_source)
    assert all(isinstance(s, PriceSource) for s in made)
    assert [s.name for s in made] == ["sample", "yfinance", "file"]
