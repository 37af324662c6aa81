"""The stored recursion states (`warehouse.forecast_state`): written per model version and ticker,
kept for tickers a run did not forecast, deleted where a features write made them stale."""

from __future__ import annotations

import datetime as dt

import polars as pl

from warehouse import forecast_state, transaction

DAY = dt.date(2024, 3, 1)


def _state(tickers: list[str], as_of: dt.date, model: str = "lstm") -> pl.DataFrame:
    n = len(tickers)
    return pl.DataFrame(
        {
            "ticker": tickers,
            "model": [model] * n,
            "as_of": [as_of] * n,
            "s2": [1e-4] * n,
            "next_variance": [float("nan")] * n,
        }
    )


def test_a_write_replaces_the_tickers_it_has_and_keeps_the_others(tmp_path):
    path = tmp_path / "w.duckdb"
    with transaction(path) as w:
        forecast_state.write(w, "v1", _state(["AAA", "BBB"], DAY))
        forecast_state.write(w, "v2", _state(["AAA"], DAY, "gjr_garch"))
    with transaction(path) as w:  # BBB had no complete row this run: its state stays
        forecast_state.write(w, "v1", _state(["AAA"], DAY + dt.timedelta(days=3)))
        assert forecast_state.write(w, "v1", pl.DataFrame()) == 0  # nothing could continue
    v1 = forecast_state.stored(path, "v1")
    assert v1.select("ticker", "as_of").rows() == [("AAA", DAY + dt.timedelta(days=3)), ("BBB", DAY)]
    assert v1["next_variance"].is_nan().all()  # stored as null, read back as NaN
    assert forecast_state.stored(path, "v2")["model"].to_list() == ["gjr_garch"]
    assert forecast_state.stored(path, "v3").height == 0


def test_invalidate_deletes_the_states_taken_at_or_after_a_replaced_row(tmp_path):
    path = tmp_path / "w.duckdb"
    with transaction(path) as w:
        forecast_state.write(w, "v1", _state(["AAA", "BBB", "CCC"], DAY))
        forecast_state.invalidate(w, ["AAA", "BBB"], DAY + dt.timedelta(days=1))  # a new session
    assert forecast_state.stored(path, "v1").height == 3
    with transaction(path) as w:
        forecast_state.invalidate(w, ["AAA"], DAY)  # a row on as_of rewritten
        forecast_state.invalidate(w, ["BBB"], None)  # the whole history
    assert forecast_state.stored(path, "v1")["ticker"].to_list() == ["CCC"]
    with transaction(path) as w:
        forecast_state.invalidate(w, None, None)  # a full rebuild
    assert forecast_state.stored(path, "v1").height == 0
