"""The LSTM forecaster on a small synthetic panel, and the contract every forecaster honours.

The contract test (neuralforecast's `check_model` idea) runs the same checks on the LSTM and on
each baseline: fit, then predict returns `<float32>[rows, H, Q]`, finite, sorted along Q, in the
panel's (ticker, date) order, and the same again after a refit on the same inputs.
"""

from __future__ import annotations

import datetime as dt

import jax
import numpy as np
import polars as pl
import pytest
from flax import serialization

from forecast_core.columns import DATE, PRICE, TICKER
from forecast_core.errors import InsufficientDataError
from forecast_core.models.baselines import BASELINES, make_baseline
from forecast_core.models.forecaster import Forecaster, ForecastTask, rows_between, training_rows
from forecast_core.models.lstm import artifacts
from forecast_core.models.lstm.forecaster import LSTMForecaster
from forecast_core.models.lstm.windows import fit_scalers
from tests.support.small_lstm import CFG


@pytest.fixture(scope="module")
def lstm(setup) -> LSTMForecaster:
    panel, task, folds = setup
    return LSTMForecaster(task, CFG).fit(panel, folds[0].train_end, folds[0].val)


def after_val_changed(panel: pl.DataFrame, task: ForecastTask, val_end: dt.date) -> pl.DataFrame:
    """Every feature, target and price dated after `val_end` scaled by random factors, and a new
    ticker DDD (a copy of AAA) listed only after `val_end`."""
    rng = np.random.default_rng(7)
    later = pl.col(DATE) > val_end
    cols = [*task.feature_columns, *task.target_columns, PRICE]
    changed = panel.with_columns(
        pl.when(later).then(pl.col(c) * pl.Series(rng.uniform(-3, 3, panel.height))).otherwise(pl.col(c))
        for c in cols
    )
    listed = changed.filter(later & (pl.col(TICKER) == "AAA")).with_columns(pl.lit("DDD").alias(TICKER))
    return pl.concat([changed, listed]).sort(TICKER, DATE)


@pytest.fixture(scope="module")
def late_changes(setup):
    """An LSTM fitted like `lstm`, on the panel changed after fold 0's val_end."""
    panel, task, folds = setup
    changed = after_val_changed(panel, task, folds[0].val_end)
    return changed, LSTMForecaster(task, CFG).fit(changed, folds[0].train_end, folds[0].val)


def assert_same_params(a: dict, b: dict) -> None:
    paths_a = jax.tree_util.tree_leaves_with_path(a)
    leaves_b = jax.tree_util.tree_leaves(b)
    assert len(paths_a) == len(leaves_b) > 0
    for (path, la), lb in zip(paths_a, leaves_b):
        np.testing.assert_array_equal(np.asarray(la), np.asarray(lb), err_msg=jax.tree_util.keystr(path))


def test_predict_shape_order_and_sorted_quantiles(setup, lstm):
    panel, task, folds = setup
    f = folds[0]
    q = lstm.predict(panel, f.test_start, f.test_end)
    rows = rows_between(panel, f.test_start, f.test_end)
    assert q.shape == (rows.height, len(task.horizons), len(task.quantiles)) == (180, 2, 3)
    assert q.dtype == np.float32 and np.isfinite(q).all()
    assert np.all(np.diff(q, axis=-1) >= 0)
    # Input order does not matter; output rows follow rows_between's (ticker, date) order: a single
    # ticker, or a single date, predicted alone gives the matching rows of the full prediction.
    np.testing.assert_array_equal(lstm.predict(panel.sample(fraction=1.0, shuffle=True, seed=1),
                                               f.test_start, f.test_end), q)  # fmt: skip
    bbb = (rows[TICKER] == "BBB").to_numpy()
    np.testing.assert_array_equal(lstm.predict(panel.filter(pl.col(TICKER) == "BBB"),
                                               f.test_start, f.test_end), q[bbb])  # fmt: skip
    day = rows[DATE][100]
    np.testing.assert_array_equal(lstm.predict(panel, day, day), q[(rows[DATE] == day).to_numpy()])
    # The bands are not degenerate: the 10-90 spread is positive and of the targets' order.
    spread = q[:, :, 2] - q[:, :, 0]
    assert np.all(spread > 0)
    assert 0.1 < np.median(spread[:, 1]) / rows["target_h5"].std() < 10


def test_fit_ignores_everything_after_val_end(setup, lstm, late_changes):
    """Leakage: targets, features and prices after val_end (and a ticker listed later) change
    nothing in the fitted model, bit for bit."""
    panel, task, folds = setup
    changed, late = late_changes
    after = pl.col(DATE) > folds[0].val_end
    assert not changed.filter(after).drop(TICKER).equals(panel.filter(after).drop(TICKER))
    assert changed.filter(~after).equals(panel.filter(~after))
    assert_same_params(late.params, lstm.params)
    assert late.result.val_losses == lstm.result.val_losses
    for name in ("feature_mean", "feature_std", "target_scale"):
        np.testing.assert_array_equal(getattr(late.scalers, name), getattr(lstm.scalers, name))


def test_scalers_come_from_training_rows_only(setup, lstm):
    panel, task, folds = setup
    train_end = folds[0].train_end
    s = lstm.scalers
    assert s.tickers == ("AAA", "BBB", "CCC")
    for i, ticker in enumerate(s.tickers):
        train = panel.filter(
            (pl.col(TICKER) == ticker) & (pl.col(DATE) <= train_end)
            & pl.all_horizontal(pl.col(task.target_columns).is_not_null())
        )  # fmt: skip
        x = train.select(task.feature_columns).to_numpy()
        y = train.select(task.target_columns).to_numpy()
        np.testing.assert_allclose(s.feature_mean[i], x.mean(axis=0), rtol=1e-5, atol=1e-7)
        std = x.std(axis=0, ddof=1)
        np.testing.assert_allclose(s.feature_std[i], np.where(std > 1e-8, std, 1.0), rtol=1e-5)
        np.testing.assert_allclose(s.target_scale[i], y.std(axis=0, ddof=1), rtol=1e-5)
    # Scaling rows after train_end differently does not move the scalers.
    shifted = panel.with_columns(
        pl.when(pl.col(DATE) > train_end).then(pl.col(c) * 5 + 1).otherwise(pl.col(c))
        for c in (*task.feature_columns, *task.target_columns)
    )
    again = fit_scalers(training_rows(shifted, train_end, task), task)
    np.testing.assert_array_equal(again.feature_mean, s.feature_mean)
    np.testing.assert_array_equal(again.target_scale, s.target_scale)


def test_artifact_round_trip_is_bit_identical(setup, lstm):
    panel, task, folds = setup
    f = folds[0]
    blob = artifacts.to_bytes(lstm)
    assert artifacts.sha256(artifacts.to_bytes(lstm)) == artifacts.sha256(blob)
    loaded = artifacts.from_bytes(blob)
    assert loaded.cfg == lstm.cfg and loaded.task == lstm.task
    assert loaded.scalers.tickers == lstm.scalers.tickers
    assert_same_params(loaded.params, lstm.params)
    np.testing.assert_array_equal(loaded.predict(panel, f.test_start, f.test_end),
                                  lstm.predict(panel, f.test_start, f.test_end))  # fmt: skip
    assert artifacts.to_bytes(loaded) == blob


def test_unfitted_or_foreign_artifacts_are_refused(setup):
    _, task, _ = setup
    with pytest.raises(ValueError, match="not been fitted"):
        artifacts.to_bytes(LSTMForecaster(task, CFG))
    with pytest.raises(ValueError, match="unsupported artifact format"):
        artifacts.from_bytes(serialization.msgpack_serialize({"format_version": 99}))


def test_ticker_unseen_in_training_raises_naming_it(setup, late_changes):
    _, _, folds = setup
    changed, late = late_changes
    assert "DDD" not in late.scalers.tickers
    with pytest.raises(InsufficientDataError, match="DDD"):
        late.predict(changed, folds[0].test_start, folds[0].test_end)
    # The known tickers still predict.
    known = changed.filter(pl.col(TICKER) != "DDD")
    assert late.predict(known, folds[0].test_start, folds[0].test_end).shape[0] == 180


def test_lstm_needs_a_validation_slice_and_full_windows(setup, lstm):
    panel, _, folds = setup
    with pytest.raises(ValueError, match="validation slice"):
        LSTMForecaster(lstm.task, CFG).fit(panel, folds[0].train_end, None)
    first = panel[DATE].min()
    with pytest.raises(InsufficientDataError, match="lookback=8"):
        lstm.predict(panel, first, first)


def make_forecaster(name: str, task: ForecastTask) -> Forecaster:
    return LSTMForecaster(task, CFG) if name == "lstm" else make_baseline(name, task, CFG)


@pytest.mark.parametrize("name", ["lstm", *BASELINES])
def test_forecaster_contract(name, setup, request):
    panel, task, folds = setup
    f = folds[0]
    model = make_forecaster(name, task)
    assert model.fit(panel, f.train_end, f.val) is model
    q = model.predict(panel, f.test_start, f.test_end)
    rows = rows_between(panel, f.test_start, f.test_end)
    assert q.dtype == np.float32
    assert q.shape == (rows.height, len(task.horizons), len(task.quantiles))
    assert np.isfinite(q).all()
    assert np.all(np.diff(q, axis=-1) >= 0)
    # Rows in (ticker, date) order: each ticker alone, and a shorter date range, give the
    # matching slices of the full prediction; shuffling the input changes nothing.
    for ticker in ("AAA", "CCC"):
        alone = model.predict(panel.filter(pl.col(TICKER) == ticker), f.test_start, f.test_end)
        np.testing.assert_allclose(alone, q[(rows[TICKER] == ticker).to_numpy()], rtol=1e-6, atol=1e-7)
    start, end = rows[DATE][10], rows[DATE][40]
    sub = ((rows[DATE] >= start) & (rows[DATE] <= end)).to_numpy()
    np.testing.assert_allclose(model.predict(panel, start, end), q[sub], rtol=1e-6, atol=1e-7)
    shuffled = panel.sample(fraction=1.0, shuffle=True, seed=3)
    np.testing.assert_allclose(model.predict(shuffled, f.test_start, f.test_end), q, rtol=1e-6, atol=1e-7)
    # An empty range (a Saturday) gives no rows, not a malformed array.
    saturday = dt.date(2016, 1, 9)
    assert model.predict(panel, saturday, saturday).shape == (0, len(task.horizons), len(task.quantiles))
    # Refitting a fresh instance on the same inputs gives the same predictions.
    if name == "lstm":  # the module's fitted LSTM is the refit
        again = request.getfixturevalue("lstm")
    else:
        again = make_forecaster(name, task).fit(panel, f.train_end, f.val)
    np.testing.assert_array_equal(again.predict(panel, f.test_start, f.test_end), q)
