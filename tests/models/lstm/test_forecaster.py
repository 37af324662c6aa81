"""The LSTM forecaster on a small synthetic panel (and on real OHLCV), and the contract every
forecaster honours.

The LSTM starts at its volatility prior: untrained, it returns the prior's bands, and on the
unpredictable synthetic returns training often keeps it there (best epoch -1, the head's last
kernel still zero, so the network ignores its inputs). Tests of what the network does with its
inputs therefore also run on `scrambled`: the fitted ensemble with a random last kernel.

The contract test (neuralforecast's `check_model` idea) runs the same checks on the LSTM and on
each baseline: fit, then predict returns `<float32>[rows, H, Q]`, finite, sorted along Q, in the
panel's (ticker, date) order, and the same again after a refit on the same inputs.
"""

from __future__ import annotations

import copy
import datetime as dt

import jax
import numpy as np
import polars as pl
import pytest
from flax import serialization

from forecast_core.columns import DATE, PRICE, TICKER
from forecast_core.config import config_from_dict
from forecast_core.data.features import DAILY_RETURN, build_features
from forecast_core.errors import InsufficientDataError
from forecast_core.evaluation import metrics
from forecast_core.models.baselines import BASELINES, EwmaVol, make_baseline
from forecast_core.models.continuation import STATE_SLACK, continuable
from forecast_core.models.forecaster import Forecaster, ForecastTask, rows_between
from forecast_core.models.lstm import artifacts, inputs
from forecast_core.models.lstm.forecaster import LSTMForecaster
from forecast_core.models.lstm.inputs import input_names, volatility_inputs
from forecast_core.models.lstm.prior import sorted_panel, standardised_quantiles
from forecast_core.models.lstm.train import create_states
from tests.support.small_lstm import CFG, OHLC_CFG, ohlc_prices, ohlc_setup, with_settings
from tests.support.synthetic import synthetic_prices

ENSEMBLE_CFG = with_settings(CFG, model={"ensemble_size": 3})
RANGE_INPUTS = ("range_ratio", "gap")
MARKET_INPUTS = ("mkt_shock", "mkt_abs_shock", "mkt_vol_ratio")


@pytest.fixture(scope="module")
def lstm(setup) -> LSTMForecaster:
    panel, task, folds = setup
    return LSTMForecaster(task, CFG).fit(panel, folds[0].train_end, folds[0].val)


@pytest.fixture(scope="module")
def ensemble(setup) -> LSTMForecaster:
    """A 3-member ensemble fitted like `lstm`."""
    panel, task, folds = setup
    return LSTMForecaster(task, ENSEMBLE_CFG).fit(panel, folds[0].train_end, folds[0].val)


def with_random_head(model: LSTMForecaster, seed: int = 0) -> LSTMForecaster:
    """A copy of a fitted model whose members' last kernels are random: a network whose forecasts
    depend on its inputs, whether or not training moved it from the prior."""
    out = copy.copy(model)
    head = model.params["head_out"]
    kernel = np.random.default_rng(seed).standard_normal(np.shape(head["kernel"])).astype(np.float32) * 0.5
    out.params = {**model.params, "head_out": {**head, "kernel": kernel}}
    return out


def untrained(model: LSTMForecaster) -> LSTMForecaster:
    """A copy of a fitted model with the states `create_states` gives it (fit's init key)."""
    out = copy.copy(model)
    init_key = jax.random.split(jax.random.PRNGKey(model.cfg.train.seed))[0]
    states = create_states(model.cfg, model.model, len(model.scalers.inputs), init_key, model.prior_z_)
    out.params = jax.device_get(states.params)
    return out


@pytest.fixture(scope="module")
def scrambled(ensemble) -> LSTMForecaster:
    return with_random_head(ensemble)


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


def assert_same_fit(a: LSTMForecaster, b: LSTMForecaster) -> None:
    """Same prior, input scaler, prior z-quantiles, parameters and training history, bit for bit."""
    assert a.prior.state() == b.prior.state()
    np.testing.assert_array_equal(a.prior_z_, b.prior_z_)
    assert a.scalers.tickers == b.scalers.tickers and a.scalers.inputs == b.scalers.inputs
    np.testing.assert_array_equal(a.scalers.input_mean, b.scalers.input_mean)
    np.testing.assert_array_equal(a.scalers.input_std, b.scalers.input_std)
    assert_same_params(a.params, b.params)
    ra, rb = a.result, b.result
    assert ra.prior_val_loss == rb.prior_val_loss and ra.best_epoch == rb.best_epoch
    assert ra.val_losses == rb.val_losses and ra.train_losses == rb.train_losses
    assert ra.member_val_losses == rb.member_val_losses


def ewma_scales(panel: pl.DataFrame, task: ForecastTask) -> tuple[pl.DataFrame, np.ndarray]:
    """The panel in (ticker, date) order and the `ewma_vol` baseline's h-session scales of its rows,
    `sigma_t * sqrt(h)` `[rows, H]` (NaN in warm-up), computed apart from the LSTM."""
    rows = panel.sort(TICKER, DATE)
    sigma = EwmaVol(task, lam=CFG.ewma_lambda).with_sigma(panel)["sigma"].to_numpy()
    return rows, sigma[:, None] * np.sqrt(np.asarray(task.horizons, dtype=np.float64))


@pytest.mark.parametrize("which", ["lstm", "scrambled"])
def test_predict_shape_order_and_sorted_quantiles(setup, which, request):
    panel, task, folds = setup
    model = request.getfixturevalue(which)
    f = folds[0]
    q = model.predict(panel, f.test_start, f.test_end)
    rows = rows_between(panel, f.test_start, f.test_end)
    assert q.shape == (rows.height, len(task.horizons), len(task.quantiles)) == (180, 2, 3)
    assert q.dtype == np.float32 and np.isfinite(q).all()
    assert np.all(np.diff(q, axis=-1) >= 0)
    # Input order does not matter; output rows follow rows_between's (ticker, date) order: a single
    # ticker, or a single date, predicted alone gives the matching rows of the full prediction.
    np.testing.assert_array_equal(model.predict(panel.sample(fraction=1.0, shuffle=True, seed=1),
                                                f.test_start, f.test_end), q)  # fmt: skip
    bbb = (rows[TICKER] == "BBB").to_numpy()
    np.testing.assert_array_equal(model.predict(panel.filter(pl.col(TICKER) == "BBB"),
                                                f.test_start, f.test_end), q[bbb])  # fmt: skip
    day = rows[DATE][100]
    np.testing.assert_array_equal(model.predict(panel, day, day), q[(rows[DATE] == day).to_numpy()])
    # The bands are not degenerate: the 10-90 spread is positive and of the targets' order.
    spread = q[:, :, 2] - q[:, :, 0]
    assert np.all(spread > 0)
    assert 0.1 < np.median(spread[:, 1]) / rows["target_h5"].std() < 10


def test_fit_ignores_everything_after_val_end(setup, lstm, late_changes):
    """Leakage: targets, features and prices after val_end (and a ticker listed later) change
    nothing in the fitted model (prior, scaler, parameters, every epoch's losses), bit for bit."""
    panel, task, folds = setup
    changed, late = late_changes
    after = pl.col(DATE) > folds[0].val_end
    assert not changed.filter(after).drop(TICKER).equals(panel.filter(after).drop(TICKER))
    assert changed.filter(~after).equals(panel.filter(~after))
    assert len(lstm.result.val_losses) > 0
    assert_same_fit(late, lstm)


def test_input_scaler_comes_from_training_rows_only(setup, lstm):
    """The scaler is the pooled mean and std of the inputs on rows <= train_end; changing every
    input, target and price after train_end (validation included) does not move it, nor the prior
    or its z-quantiles, while the validation losses do move."""
    panel, task, folds = setup
    f = folds[0]
    s = lstm.scalers
    assert s.tickers == ("AAA", "BBB", "CCC") and s.inputs == input_names(panel)
    rows, scales = ewma_scales(panel.filter(pl.col(DATE) <= f.train_end), task)
    _, x = volatility_inputs(rows, scales[:, 0])
    np.testing.assert_allclose(s.input_mean, np.nanmean(x, axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(s.input_std, np.nanstd(x, axis=0), rtol=1e-5)
    later = pl.col(DATE) > f.train_end
    cols = [*task.feature_columns, *task.target_columns, PRICE]  # ret_1 and the market's return too
    shifted = panel.with_columns(pl.when(later).then(pl.col(c) * 5 + 0.01).otherwise(pl.col(c)) for c in cols)
    again = LSTMForecaster(task, CFG).fit(shifted, f.train_end, f.val)
    np.testing.assert_array_equal(again.scalers.input_mean, s.input_mean)
    np.testing.assert_array_equal(again.scalers.input_std, s.input_std)
    np.testing.assert_array_equal(again.prior_z_, lstm.prior_z_)
    assert again.prior.state() == lstm.prior.state()
    assert again.result.prior_val_loss != lstm.result.prior_val_loss


def test_inputs_at_t_use_data_up_to_t_only():
    """`volatility_inputs` on a panel with every input (market, range): changing the returns, the
    range features, the market's return and the prior's sigma after t leaves every row dated <= t
    unchanged, bit for bit, and changes the rows after t."""
    cfg = config_from_dict({"universe": {"tickers": ["AAA", "BBB"], "exogenous": ["MKT"]}})
    prices = synthetic_prices(("AAA", "BBB", "MKT"), dt.date(2015, 1, 2), dt.date(2016, 6, 30), ohlcv=True)
    panel = sorted_panel(build_features(prices, cfg))
    names = input_names(panel)
    assert names == ("shock", "abs_shock", "leverage", "vol_ratio", *MARKET_INPUTS, *RANGE_INPUTS)
    sigma = EwmaVol(ForecastTask((), (1,), CFG.quantiles)).with_sigma(panel)["sigma"].to_numpy()
    got, x = volatility_inputs(panel, sigma)
    assert got == names and x.shape == (panel.height, len(names)) and x.dtype == np.float32
    t = panel[DATE].unique().sort()[200]
    later = (panel[DATE] > t).to_numpy()
    rng = np.random.default_rng(0)
    by_date = pl.DataFrame({DATE: panel[DATE].unique(), "f": rng.uniform(0.2, 3, panel[DATE].n_unique())})
    changed = (
        panel.join(by_date, on=DATE, how="left", maintain_order="left")
        .with_columns(
            pl.when(pl.col(DATE) > t)
            .then(pl.col(c) * pl.Series(rng.uniform(-3, 3, panel.height)))
            .otherwise(c)
            for c in (DAILY_RETURN, "parkinson_vol", "overnight_gap")
        )
        .with_columns(  # the market's return is one value per date
            pl.when(pl.col(DATE) > t).then(pl.col("mkt_mkt_ret_1") * pl.col("f")).otherwise("mkt_mkt_ret_1")
        )
        .drop("f")
    )
    sigma_changed = np.where(later, sigma * rng.uniform(0.5, 2, len(sigma)), sigma)
    _, x_changed = volatility_inputs(changed, sigma_changed)
    np.testing.assert_array_equal(x_changed[~later], x[~later])
    for j, name in enumerate(names):
        assert not np.array_equal(x_changed[later, j], x[later, j], equal_nan=True), name


def test_range_and_market_inputs_only_where_the_panel_has_their_columns(setup):
    panel, _, _ = setup  # closes only, with a market series
    assert not set(RANGE_INPUTS) & set(input_names(panel))
    assert set(MARKET_INPUTS) <= set(input_names(panel))
    no_market = panel.drop(*[c for c in panel.columns if c.startswith("mkt_")])
    assert input_names(no_market) == ("shock", "abs_shock", "leverage", "vol_ratio")
    ohlc = panel.with_columns(pl.lit(0.01).alias("parkinson_vol"), pl.lit(0.0).alias("overnight_gap"))
    assert input_names(ohlc)[-2:] == RANGE_INPUTS
    assert input_names(ohlc.drop("overnight_gap")) == input_names(panel)  # both columns, or neither
    # A model that reads an input refuses a panel without its columns, naming them.
    sigma = np.full(panel.height, 0.01)
    with pytest.raises(ValueError, match="overnight_gap"):
        volatility_inputs(ohlc.drop("overnight_gap"), sigma, input_names(ohlc))
    with pytest.raises(ValueError, match="mkt_"):
        volatility_inputs(no_market, sigma, input_names(panel))


def test_untrained_lstm_returns_its_priors_bands(setup, lstm):
    """The LSTM starts equal to its prior: with `create_states`' parameters it returns the ewma
    prior's z-quantiles (`standardised_quantiles` of the training rows' z = R_h / scale_h) times
    each row's scale, which is the `ewma_vol` baseline's forecast with those z-quantiles."""
    panel, task, folds = setup
    f = folds[0]
    assert CFG.model.sigma_prior == "ewma" and CFG.model.ensemble_size == 1
    # The training rows: dated <= train_end, every target known, a full window of known inputs.
    visible, scales = ewma_scales(panel.filter(pl.col(DATE) <= f.val_end), task)
    _, x = volatility_inputs(visible, scales[:, 0])
    lookback = CFG.model.lookback
    window_ok = (
        visible.with_columns(pl.Series("known", np.isfinite(x).all(axis=1) & np.isfinite(scales).all(axis=1)))
        .select(pl.col("known").cast(pl.Int32).rolling_min(lookback).over(TICKER) == 1)
        .to_series()
        .fill_null(False)
        .to_numpy()
    )
    targets = visible.select(task.target_columns).to_numpy()
    train = window_ok & (visible[DATE] <= f.train_end).to_numpy() & np.isfinite(targets).all(axis=1)
    expected_z = standardised_quantiles(targets[train] / scales[train], task.quantiles)
    np.testing.assert_allclose(lstm.prior_z_, expected_z, rtol=1e-5, atol=1e-6)
    assert expected_z[:, task.median_index].tolist() == [0.0, 0.0]
    start = untrained(lstm)
    q = start.predict(panel, f.test_start, f.test_end)
    rows, test_scales = ewma_scales(panel.filter(pl.col(DATE) <= f.test_end), task)
    in_test = (rows[DATE] >= f.test_start).to_numpy()
    np.testing.assert_allclose(
        q, lstm.prior_z_[None] * test_scales[in_test][:, :, None], rtol=1e-6, atol=1e-9
    )
    baseline = EwmaVol(task, lam=CFG.ewma_lambda)
    baseline.z_ = lstm.prior_z_
    np.testing.assert_allclose(q, baseline.predict(panel, f.test_start, f.test_end), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("which", ["lstm", "ensemble"])
def test_prior_val_loss_is_the_priors_validation_pinball(setup, which, request):
    """`prior_val_loss`: the pinball (log returns) of the prior's bands on the validation rows;
    `best_val_loss` never exceeds it, and `best_epoch` is -1 exactly when no epoch beat it."""
    panel, task, folds = setup
    model = request.getfixturevalue(which)
    f = folds[0]
    r = model.result
    val = rows_between(panel, *f.val).filter(pl.all_horizontal(pl.col(task.target_columns).is_not_null()))
    rows, scales = ewma_scales(panel.filter(pl.col(DATE) <= f.val_end), task)
    in_val = (rows[DATE] >= f.val_start).to_numpy()
    y = val.select(task.target_columns).to_numpy()
    assert len(y) == in_val.sum()
    prior_bands = model.prior_z_[None] * scales[in_val][:, :, None]
    assert r.prior_val_loss == pytest.approx(metrics.pinball(y, prior_bands, task.quantiles), rel=1e-6)
    start = untrained(model).predict(panel, *f.val)
    assert metrics.pinball(y, start, task.quantiles) == pytest.approx(r.prior_val_loss, rel=1e-6)
    assert r.best_val_loss <= r.prior_val_loss
    assert (r.best_epoch == -1) == (min(r.val_losses) >= r.prior_val_loss)
    best = model.predict(panel, *f.val)
    assert metrics.pinball(y, best, task.quantiles) == pytest.approx(r.best_val_loss, rel=1e-5)


def test_a_tickers_forecast_does_not_depend_on_other_tickers(setup, scrambled):
    """No cross-sectional inputs: changing every other ticker's history, or dropping them, leaves
    a ticker's forecasts unchanged, bit for bit (the market series is the same for all)."""
    panel, task, folds = setup
    f = folds[0]
    q = scrambled.predict(panel, f.test_start, f.test_end)
    rows = rows_between(panel, f.test_start, f.test_end)
    bbb = (rows[TICKER] == "BBB").to_numpy()
    others = pl.col(TICKER) != "BBB"
    own = [c for c in (*task.feature_columns, *task.target_columns, PRICE) if not c.startswith("mkt_")]
    rng = np.random.default_rng(3)
    changed = panel.with_columns(
        pl.when(others).then(pl.col(c) * pl.Series(rng.uniform(0.2, 3, panel.height))).otherwise(c)
        for c in own
    )
    q_changed = scrambled.predict(changed, f.test_start, f.test_end)
    np.testing.assert_array_equal(q_changed[bbb], q[bbb])
    assert not np.allclose(q_changed[~bbb], q[~bbb])  # the others' forecasts did move
    alone = scrambled.predict(panel.filter(pl.col(TICKER) == "BBB"), f.test_start, f.test_end)
    np.testing.assert_array_equal(alone, q[bbb])


def test_a_later_listed_tickers_forecast_does_not_depend_on_other_tickers(setup, scrambled):
    """BBB listed 150 sessions after AAA and CCC: its forecasts alone equal its rows beside them."""
    panel, _, folds = setup
    f = folds[0]
    listed = panel[DATE].unique().sort()[150]
    late = panel.filter((pl.col(TICKER) != "BBB") | (pl.col(DATE) >= listed))
    rows = rows_between(late, f.test_start, f.test_end)
    q = scrambled.predict(late, f.test_start, f.test_end)[(rows[TICKER] == "BBB").to_numpy()]
    alone = scrambled.predict(late.filter(pl.col(TICKER) == "BBB"), f.test_start, f.test_end)
    np.testing.assert_array_equal(alone, q)


def test_windows_of_a_date_range_keep_exactly_the_rows_their_windows_read(setup, scrambled):
    """`windows(panel, start, end)` (what `predict` builds: a night's forecasts read the last
    `lookback` rows of each ticker) holds the full panel's arrays at exactly the rows of the
    windows ending in [start, end], so the forecasts are those of the full arrays."""
    panel, _, folds = setup
    f = folds[0]
    lookback = scrambled.cfg.model.lookback
    full = scrambled.windows(panel)
    for start, end in ((f.test_end, f.test_end), (f.test_start, f.test_end)):
        part = scrambled.windows(panel, start, end)
        ends = np.flatnonzero((full.dates >= np.datetime64(start)) & (full.dates <= np.datetime64(end)))
        keep = np.unique(np.concatenate([np.arange(e - lookback + 1, e + 1) for e in ends]))
        assert 0 < keep.size < len(full.dates) and len(part.dates) == keep.size
        for name in ("x", "y", "ticker_id", "target_scale", "window_ok", "dates"):
            np.testing.assert_array_equal(getattr(part, name), getattr(full, name)[keep], err_msg=name)
        assert part.tickers.to_list() == full.tickers.gather(keep).to_list()


def test_ensemble_predict_is_the_mean_of_its_members(setup, lstm, ensemble, scrambled):
    """`predict_members` `[K, rows, H, Q]`; `predict` is their mean, sorted along Q. The members
    are different networks (their own initialisations), and their forecasts differ once the head
    has learned anything (`scrambled`: a random last kernel on the same members)."""
    panel, task, folds = setup
    f = folds[0]
    n = rows_between(panel, f.test_start, f.test_end).height
    for model, k in ((lstm, 1), (ensemble, 3), (scrambled, 3)):
        members = model.predict_members(panel, f.test_start, f.test_end)
        assert members.shape == (k, n, 2, 3) and members.dtype == np.float32
        q = model.predict(panel, f.test_start, f.test_end)
        np.testing.assert_array_equal(q, members.mean(axis=0))
        assert np.all(np.diff(members, axis=-1) >= 0) and np.all(np.diff(q, axis=-1) >= 0)
    kernel = np.asarray(ensemble.params["lstm_0"]["input"]["kernel"])
    assert kernel.shape[0] == 3 and not np.array_equal(kernel[0], kernel[1])
    assert len(ensemble.result.member_val_losses[0]) == 3
    members = scrambled.predict_members(panel, f.test_start, f.test_end)
    for i, j in ((0, 1), (0, 2), (1, 2)):
        assert np.abs(members[i] - members[j]).max() > 1e-4
    if ensemble.result.best_epoch >= 0:  # trained members differ on their own
        trained = ensemble.predict_members(panel, f.test_start, f.test_end)
        assert not np.array_equal(trained[0], trained[1])


@pytest.mark.parametrize("which", ["lstm", "scrambled"])
def test_artifact_round_trip_is_bit_identical(setup, which, request):
    panel, task, folds = setup
    model = request.getfixturevalue(which)
    f = folds[0]
    blob = artifacts.to_bytes(model)
    assert artifacts.sha256(artifacts.to_bytes(model)) == artifacts.sha256(blob)
    loaded = artifacts.from_bytes(blob)
    assert loaded.cfg == model.cfg and loaded.task == model.task
    assert loaded.scalers.tickers == model.scalers.tickers and loaded.scalers.inputs == model.scalers.inputs
    np.testing.assert_array_equal(loaded.scalers.input_mean, model.scalers.input_mean)
    np.testing.assert_array_equal(loaded.scalers.input_std, model.scalers.input_std)
    np.testing.assert_array_equal(loaded.prior_z_, model.prior_z_)
    assert loaded.prior.state() == model.prior.state()
    assert_same_params(loaded.params, model.params)
    np.testing.assert_array_equal(loaded.predict_members(panel, f.test_start, f.test_end),
                                  model.predict_members(panel, f.test_start, f.test_end))  # fmt: skip
    assert artifacts.to_bytes(loaded) == blob


def test_ewma_runs_is_polars_ewm_mean_over_each_tickers_finite_values():
    """The inputs' EWMA (seedable, `ewma_runs`) against polars' `ewm_mean(adjust=False,
    ignore_nulls=True)` per ticker, gaps and `min_samples` included, on the rows with a value."""
    rng = np.random.default_rng(3)
    values = rng.standard_normal(900) ** 2
    values[rng.random(900) < 0.1] = np.nan
    lengths = np.array([400, 15, 485])
    frame = pl.DataFrame({"t": np.repeat([0, 1, 2], lengths), "v": values}).with_columns(
        pl.col("v").fill_nan(None)
    )
    for alpha, min_samples in ((0.06, 20), (inputs.LONG_HALFLIFE_ALPHA, 1)):
        want = frame.select(
            pl.col("v")
            .ewm_mean(alpha=alpha, adjust=False, ignore_nulls=True, min_samples=min_samples)
            .over("t")
        )["v"].to_numpy()
        got = inputs.ewma_runs(values, lengths, alpha, min_samples=min_samples)
        known = np.isfinite(values)
        np.testing.assert_allclose(got[known], want[known], rtol=1e-13, equal_nan=True)
        assert np.isnan(got[:19]).all() if min_samples == 20 else np.isfinite(got[1:400]).all()


@pytest.mark.parametrize(("data", "prior"), [("small", "ewma"), ("small", "blend"), ("ohlc", "ewma")])
def test_forecast_continues_from_its_stored_state_to_the_bit(setup, data, prior):
    """`forecast` on each ticker's rows after its stored state's `as_of`, continuing from that
    state, gives the forecasts (and the next state) of the whole history, bit for bit: the prior's
    recursions, the market inputs (synthetic panel) and the range inputs (real OHLCV)."""
    panel, task, folds = setup if data == "small" else ohlc_setup()
    cfg = with_settings(CFG if data == "small" else OHLC_CFG, model={"sigma_prior": prior})
    fold = folds[-1]
    model = with_random_head(LSTMForecaster(task, cfg).fit(panel, fold.train_end, fold.val))
    days = panel[DATE].unique().sort().to_list()
    first, last = days[-12], days[-5]
    _, state = model.forecast(panel, days[-13], days[-13])
    back = cfg.model.lookback + STATE_SLACK
    assert state[TICKER].to_list() == sorted(panel[TICKER].unique().to_list())
    assert state["as_of"].unique().to_list() == [days[-13 - back]]
    tail = panel.join(state.select(TICKER, "as_of"), on=TICKER).filter(pl.col(DATE) > pl.col("as_of"))
    assert continuable(tail, state, first, model.rows_before) == state[TICKER].to_list()
    q, next_state = model.forecast(tail.drop("as_of"), first, last, carry=state)
    whole, whole_state = model.forecast(panel, first, last)
    np.testing.assert_array_equal(q, whole)
    np.testing.assert_array_equal(q, model.predict(panel, first, last))
    assert next_state.equals(whole_state) and next_state["as_of"].min() > state["as_of"].min()
    # A state too recent for a window ending at `first` (a backfill of earlier sessions): not continued.
    recent = state.with_columns(pl.lit(days[-14]).alias("as_of"))
    assert continuable(panel, recent, first, model.rows_before) == []
    assert continuable(panel, recent, first) == state[TICKER].to_list()  # a volatility model's


def test_unfitted_or_foreign_artifacts_are_refused(setup):
    _, task, _ = setup
    with pytest.raises(ValueError, match="not been fitted"):
        artifacts.to_bytes(LSTMForecaster(task, CFG))
    for version in (1, 99):  # 1: the format before the volatility prior
        with pytest.raises(ValueError, match="unsupported artifact format"):
            artifacts.from_bytes(serialization.msgpack_serialize({"format_version": version}))


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


def test_ohlc_real_data_uses_the_range_inputs():
    """Real OHLCV (a copy in tests/support/data): `build_features` adds `parkinson_vol` and
    `overnight_gap`, the LSTM reads them as `range_ratio` and `gap` (no market inputs: the set has
    no index), trains briefly, and predicts finite, sorted quantiles. The network reads exactly its
    inputs: a change of the range features moves a (random-headed) forecast, a change of a
    feature it does not read does not."""
    prices = ohlc_prices()
    assert prices.height < 1500 and {"open", "high", "low", "close"} <= set(prices.columns)
    panel, task, folds = ohlc_setup()
    assert {"parkinson_vol", "overnight_gap"} <= set(task.feature_columns)
    f = folds[0]
    model = LSTMForecaster(task, OHLC_CFG).fit(panel, f.train_end, f.val)
    assert model.scalers.inputs == ("shock", "abs_shock", "leverage", "vol_ratio", *RANGE_INPUTS)
    data = model.windows(panel)
    j = [model.scalers.inputs.index(c) for c in RANGE_INPUTS]
    assert np.all(data.x[data.window_ok][:, j].std(axis=0) > 0.1)  # scaled and varying
    assert np.all(model.scalers.input_std[j] != 1.0)
    q = model.predict(panel, f.test_start, f.test_end)
    assert q.shape == (rows_between(panel, f.test_start, f.test_end).height, 2, 3) and q.shape[0] == 180
    assert np.isfinite(q).all() and np.all(np.diff(q, axis=-1) >= 0)
    assert np.all(q[:, :, 2] > q[:, :, 0])
    head = with_random_head(model, seed=1)
    day = f.test_end
    base = head.predict(panel, day, day)
    on_day = pl.col(DATE) == day
    for c in ("parkinson_vol", "overnight_gap"):
        moved = panel.with_columns(pl.when(on_day).then(pl.col(c) * 3 + 0.01).otherwise(pl.col(c)).alias(c))
        assert np.abs(head.predict(moved, day, day) - base).max() > 1e-6, c
    unread = panel.with_columns(pl.when(on_day).then(pl.col("rsi_14") * 3).otherwise(pl.col("rsi_14")))
    np.testing.assert_array_equal(head.predict(unread, day, day), base)


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
