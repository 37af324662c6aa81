"""Baselines on synthetic panels: contract, what each learns, EWMA, calibration, leakage."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import polars as pl
import pytest

from forecast_core.columns import DATE, TICKER
from forecast_core.config import ForecastConfig
from forecast_core.data import calendar
from forecast_core.errors import InsufficientDataError
from forecast_core.evaluation.metrics import coverage, pinball
from forecast_core.models.baselines import (
    BASELINES,
    EwmaVol,
    HistoricalMean,
    PointBaseline,
    RidgeBaseline,
    ZeroReturn,
    ewma_variance,
    make_baselines,
)
from forecast_core.models.forecaster import ForecastTask, rows_between, training_rows
from tests.support.synthetic import synthetic_prices

N_SESSIONS = 800
DAYS = calendar.sessions(dt.date(2015, 1, 2), dt.date(2019, 12, 31))[:N_SESSIONS]
TRAIN_END = DAYS[499]
TEST_START, TEST_END = DAYS[510], DAYS[-1]
WARM = DAYS[30]  # first date past every warm-up (features, EWMA)
TASK = ForecastTask(feature_columns=("ret_1", "x1", "x2", "x3"), horizons=(1, 5), quantiles=(0.1, 0.5, 0.9))
TAUS = np.array(TASK.quantiles)


def panel_from_log_prices(log_price: np.ndarray, tickers: tuple[str, ...], seed: int = 0) -> pl.DataFrame:
    """Panel from `log_price [T, N]`: ret_1, features x1 (noise), x2 (lagged ret_1), x3 (10-session
    mean of ret_1), targets target_h = log p_{t+h} - log p_t. Rows deliberately not sorted."""
    t_len, n = log_price.shape
    rng = np.random.default_rng(seed)
    lp = pl.col("log_price")
    frame = pl.DataFrame(
        {
            TICKER: np.repeat(np.array(tickers), t_len),
            DATE: DAYS[:t_len] * n,
            "log_price": log_price.T.ravel(),
            "x1": rng.standard_normal(t_len * n),
        }
    ).with_columns(ret_1=lp.diff().over(TICKER))
    frame = frame.with_columns(
        x2=pl.col("ret_1").shift(1).over(TICKER),
        x3=pl.col("ret_1").rolling_mean(10).over(TICKER),
        **{f"target_h{h}": (lp.shift(-h) - lp).over(TICKER) for h in TASK.horizons},
    )
    return frame.drop("log_price").sort(DATE, TICKER)  # (date, ticker) order, not the panel's


def price_panel(tickers=("AAA", "BBB", "CCC"), seed=0) -> pl.DataFrame:
    prices = synthetic_prices(tickers, DAYS[0], DAYS[-1], seed=seed).sort(TICKER, DATE)
    lp = np.log(prices["adj_close"].to_numpy()).reshape(len(tickers), -1).T
    return panel_from_log_prices(lp, tickers, seed)


def garch_log_prices(n_tickers: int, seed: int) -> np.ndarray:
    """GARCH(1,1) with Student-t(6) shocks: s2_t = w + 0.08 r_{t-1}^2 + 0.90 s2_{t-1}."""
    rng = np.random.default_rng(seed)
    long_run = 0.015**2
    s2 = np.full(n_tickers, long_run)
    eps = rng.standard_t(6, (N_SESSIONS, n_tickers)) / math.sqrt(6 / 4)
    r = np.empty((N_SESSIONS, n_tickers))
    for t in range(N_SESSIONS):
        r[t] = np.sqrt(s2) * eps[t]
        s2 = 0.02 * long_run + 0.08 * r[t] ** 2 + 0.90 * s2
    return np.cumsum(r, axis=0)


@pytest.fixture(scope="module")
def panel() -> pl.DataFrame:
    return price_panel()


@pytest.fixture(scope="module")
def fitted(panel) -> dict:
    return {m.name: m.fit(panel, TRAIN_END) for m in make_baselines(TASK, ForecastConfig())}


def _tickers_of(panel, start, end) -> np.ndarray:
    return rows_between(panel, start, end)[TICKER].to_numpy()


# --- contract, run against every baseline --------------------------------------------------------


def test_make_baselines_order_and_config():
    cfg = ForecastConfig(ridge_alpha=3.0, ewma_lambda=0.9)
    models = make_baselines(TASK, cfg)
    assert [m.name for m in models] == [
        "zero_return", "historical_mean", "ridge", "ewma_vol", "gjr_garch", "vol_blend"
    ]  # fmt: skip
    assert list(BASELINES) == [m.name for m in models]
    assert models[2].alpha == 3.0 and models[3].lam == 0.9 and models[4].lam == 0.9 and models[5].lam == 0.9


@pytest.mark.parametrize("name", list(BASELINES))
def test_contract_shape_order_sorted(panel, fitted, name):
    model = fitted[name]
    q = model.predict(panel, TEST_START, TEST_END)
    n_rows = rows_between(panel, TEST_START, TEST_END).height
    assert q.shape == (n_rows, 2, 3) and q.dtype == np.float32
    assert np.isfinite(q).all()
    assert (np.diff(q, axis=-1) >= 0).all()
    assert (q[..., 0] < q[..., 2]).all()  # real bands, not points
    # Rows come back in (ticker, date) order whatever the panel's order.
    shuffled = panel.sample(fraction=1.0, shuffle=True, seed=7)
    np.testing.assert_array_equal(model.predict(shuffled, TEST_START, TEST_END), q)
    # Empty range.
    assert model.predict(panel, dt.date(2030, 1, 1), dt.date(2030, 2, 1)).shape == (0, 2, 3)


def test_predict_before_fit_raises(panel):
    for model in make_baselines(TASK, ForecastConfig()):
        with pytest.raises(RuntimeError, match="fit"):
            model.predict(panel, TEST_START, TEST_END)


# --- point baselines -----------------------------------------------------------------------------


def test_zero_return_point_is_zero_and_bands_are_target_quantiles(panel, fitted):
    model = fitted["zero_return"]
    point = model.predict_point(panel, TEST_START, TEST_END)
    assert point.shape == (rows_between(panel, TEST_START, TEST_END).height, 2)
    assert (point == 0).all()
    q = model.predict(panel, TEST_START, TEST_END)
    tickers = _tickers_of(panel, TEST_START, TEST_END)
    train = training_rows(panel, TRAIN_END, TASK)
    for t in ("AAA", "CCC"):
        y = train.filter(pl.col(TICKER) == t).select(TASK.target_columns).to_numpy()
        expected = np.quantile(y, TAUS, axis=0).T.astype(np.float32)  # residual = target - 0
        rows = q[tickers == t]
        np.testing.assert_array_equal(rows, np.broadcast_to(expected, rows.shape))
        # q50 is 0 + the median residual, not the point forecast.
        assert (q[tickers == t][:, :, 1] == np.float32(np.median(y, axis=0))).all()


def test_historical_mean_learns_per_ticker_drift():
    drift = np.array([0.002, -0.001, 0.0])
    rng = np.random.default_rng(11)
    log_price = np.cumsum(drift + 0.004 * rng.standard_normal((N_SESSIONS, 3)), axis=0)
    panel = panel_from_log_prices(log_price, ("AAA", "BBB", "CCC"))
    model = HistoricalMean(TASK).fit(panel, TRAIN_END)
    train = training_rows(panel, TRAIN_END, TASK)
    for i, t in enumerate(("AAA", "BBB", "CCC")):
        y = train.filter(pl.col(TICKER) == t).select(TASK.target_columns).to_numpy()
        np.testing.assert_allclose(model.means_[t], y.mean(axis=0), rtol=1e-12)
        # ~500 training rows, noise sd 0.004 per session: the drift is known to well under 0.001.
        np.testing.assert_allclose(model.means_[t], drift[i] * np.array([1, 5]), atol=0.001)
    point = model.predict_point(panel, TEST_START, TEST_END)
    tickers = _tickers_of(panel, TEST_START, TEST_END)
    for t in ("AAA", "BBB", "CCC"):
        rows = point[tickers == t]
        np.testing.assert_allclose(rows, np.broadcast_to(model.means_[t], rows.shape), rtol=1e-6)
    # q50 = point + the ticker's median residual.
    q = model.predict(panel, TEST_START, TEST_END)
    aaa = tickers == "AAA"
    expected_q50 = point[aaa] + model.band_offsets_["AAA"][:, 1]
    np.testing.assert_allclose(q[aaa][:, :, 1], expected_q50, rtol=1e-5)


def test_unseen_ticker_gets_pooled_mean_and_bands(panel):
    new = price_panel(("DDD",), seed=3).filter(pl.col(DATE) > TRAIN_END)
    both = pl.concat([panel, new])
    model = HistoricalMean(TASK).fit(both, TRAIN_END)
    assert "DDD" not in model.means_
    q = model.predict(both, TEST_START, TEST_END)
    ddd = _tickers_of(both, TEST_START, TEST_END) == "DDD"
    expected = model.pooled_mean_[:, None] + model.pooled_offsets_
    np.testing.assert_allclose(q[ddd], np.broadcast_to(expected, q[ddd].shape), rtol=1e-6)
    y_train = training_rows(panel, TRAIN_END, TASK).select(TASK.target_columns).to_numpy()
    np.testing.assert_allclose(model.pooled_mean_, y_train.mean(0))


def _ridge_panel(panel: pl.DataFrame, seed: int = 5) -> pl.DataFrame:
    """target_h1 = 2 x1 + noise, target_h5 = -x1 + noise (null where the original target is)."""
    noise = np.random.default_rng(seed).standard_normal((panel.height, 2)) * 0.1
    x1 = pl.col("x1")
    return panel.with_columns(
        target_h1=pl.when(pl.col("target_h1").is_null()).then(None).otherwise(2 * x1 + noise[:, 0]),
        target_h5=pl.when(pl.col("target_h5").is_null()).then(None).otherwise(-x1 + noise[:, 1]),
    )


def test_ridge_recovers_linear_relation(panel):
    data = _ridge_panel(panel)
    model = RidgeBaseline(TASK, alpha=10.0).fit(data, TRAIN_END)
    x1 = rows_between(data, TEST_START, TEST_END)["x1"].to_numpy()
    point = model.predict_point(data, TEST_START, TEST_END)
    np.testing.assert_allclose(point[:, 0], 2 * x1, atol=0.06)
    np.testing.assert_allclose(point[:, 1], -x1, atol=0.06)
    # Bands come from residuals (noise sd 0.1): the 80% band is about 2 * 1.28 * 0.1 wide.
    width = model.predict(data, TEST_START, TEST_END)[:, 0, 2] - point[:, 0]
    assert np.all((width > 0.09) & (width < 0.17))
    # The scaler is fitted on training rows with known features only.
    train = training_rows(data, TRAIN_END, TASK).drop_nulls(list(TASK.feature_columns))
    np.testing.assert_allclose(model.mean_, train.select(TASK.feature_columns).to_numpy().mean(0))


@pytest.mark.parametrize("chunk_rows", [97, 1_000_000])
def test_ridge_equals_sklearns_scaler_and_ridge_pipeline(panel, monkeypatch, chunk_rows):
    """The ridge solved from chunked sufficient statistics is sklearn's
    `Pipeline(StandardScaler(), Ridge(alpha))` fitted per horizon on the same rows (to rounding),
    whether the rows come in one chunk or in many of 97 rows."""
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = _ridge_panel(panel).with_columns(x2=pl.col("x2") * 1e3 + 50.0)  # scales far apart
    monkeypatch.setattr(RidgeBaseline, "CHUNK_ROWS", chunk_rows)
    model = RidgeBaseline(TASK, alpha=3.0).fit(data, TRAIN_END)
    train = training_rows(data, TRAIN_END, TASK).drop_nulls(list(TASK.feature_columns))
    x, y = train.select(TASK.feature_columns).to_numpy(), train.select(TASK.target_columns).to_numpy()
    test = rows_between(data, TEST_START, TEST_END).select(TASK.feature_columns).to_numpy()
    expected = np.column_stack(
        [make_pipeline(StandardScaler(), Ridge(alpha=3.0)).fit(x, y[:, j]).predict(test) for j in range(2)]
    )
    point = model._rows_and_point(data, TEST_START, TEST_END)[1]
    np.testing.assert_allclose(point, expected, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(model.scale_, x.std(axis=0), rtol=1e-12)


def test_ridge_ignores_targets_after_train_end(panel):
    data = _ridge_panel(panel)
    later = pl.col(DATE) > TRAIN_END
    changed = data.with_columns(
        pl.when(later).then(pl.col(c) + 5.0).otherwise(pl.col(c)).alias(c) for c in TASK.target_columns
    )
    a = RidgeBaseline(TASK).fit(data, TRAIN_END)
    b = RidgeBaseline(TASK).fit(changed, TRAIN_END)
    np.testing.assert_array_equal(a.predict(data, WARM, TEST_END), b.predict(changed, WARM, TEST_END))


def test_ridge_null_feature_at_predict_names_ticker_and_date(panel, fitted):
    with pytest.raises(InsufficientDataError, match=rf"'AAA' on {DAYS[0]}"):
        fitted["ridge"].predict(panel, DAYS[0], TEST_END)
    with pytest.raises(ValueError):  # InsufficientDataError is a ValueError
        fitted["ridge"].predict_point(panel, DAYS[0], DAYS[3])


# --- ewma_vol ------------------------------------------------------------------------------------


def _direct_ewma_sigma(r: np.ndarray, lam: float) -> np.ndarray:
    """Plain loop over one ticker's returns (the first is null): init with the first 20 returns."""
    sig = np.full(r.size, np.nan)
    s2 = np.mean(r[1:21] ** 2)
    sig[20] = math.sqrt(s2)
    for t in range(21, r.size):
        s2 = lam * s2 + (1 - lam) * r[t] ** 2
        sig[t] = math.sqrt(s2)
    return sig


def test_ewma_sigma_matches_direct_recursion(panel):
    model = EwmaVol(TASK, lam=0.94)
    with_sigma = model.with_sigma(panel)
    one = with_sigma.filter(pl.col(TICKER) == "BBB")
    r = one["ret_1"].fill_null(np.nan).to_numpy()
    expected = _direct_ewma_sigma(r, 0.94)
    got = one["sigma"].to_numpy()
    assert np.isnan(got[:20]).all()  # warm-up: fewer than 20 returns (row 0 has none)
    np.testing.assert_allclose(got[20:], expected[20:], rtol=1e-10)
    # Causal: sigma on a truncated history is the same.
    cut = model.with_sigma(panel.filter(pl.col(DATE) <= DAYS[300])).filter(pl.col(TICKER) == "BBB")
    np.testing.assert_allclose(cut["sigma"].to_numpy()[20:], got[20:301], rtol=1e-12)


def test_ewma_variance_carries_over_missing_returns():
    r = np.random.default_rng(0).standard_normal(40) * 0.01
    r[30] = np.nan
    s2 = ewma_variance(r, 0.94, warmup=20)
    assert np.isnan(s2[:19]).all() and s2[19] == pytest.approx(np.mean(r[:20] ** 2))
    assert s2[30] == s2[29]
    assert s2[31] == pytest.approx(0.94 * s2[29] + 0.06 * r[31] ** 2)


def test_ewma_median_zero_and_band_scales_with_sqrt_h(panel, fitted):
    model = fitted["ewma_vol"]
    q = model.predict(panel, TEST_START, TEST_END)
    assert (q[:, :, TASK.median_index] == 0).all()
    sigma = rows_between(model.with_sigma(panel), TEST_START, TEST_END)["sigma"].to_numpy()
    z = model.z_
    expected = sigma[:, None, None] * np.sqrt([1, 5])[None, :, None] * z[None]
    np.testing.assert_allclose(q, expected, rtol=1e-5)
    # Width in units of z grows by exactly sqrt(5) from h=1 to h=5.
    w1 = (q[:, 0, 2] - q[:, 0, 0]) / (z[0, 2] - z[0, 0])
    w5 = (q[:, 1, 2] - q[:, 1, 0]) / (z[1, 2] - z[1, 0])
    np.testing.assert_allclose(w5 / w1, math.sqrt(5), rtol=1e-5)
    # z_ are the quantiles of standardised training targets (about +-1.28 for near-normal data).
    assert -1.7 < z[0, 0] < -0.9 and 0.9 < z[0, 2] < 1.7


def test_ewma_band_covers_80_percent_out_of_sample_on_garch():
    tickers = tuple(f"T{i}" for i in range(6))
    panel = panel_from_log_prices(garch_log_prices(len(tickers), seed=21), tickers)
    model = EwmaVol(TASK).fit(panel, TRAIN_END)
    q = model.predict(panel, TEST_START, TEST_END)
    y = rows_between(panel, TEST_START, TEST_END).select(TASK.target_columns).to_numpy()
    for j in range(2):
        known = ~np.isnan(y[:, j])
        cov = coverage(y[known, j], q[known, j, 0], q[known, j, 2])
        assert 0.7 <= cov <= 0.9, (TASK.horizons[j], cov)
    # Bands that follow the volatility beat constant empirical bands on the pinball loss.
    flat = ZeroReturn(TASK).fit(panel, TRAIN_END).predict(panel, TEST_START, TEST_END)
    known = ~np.isnan(y[:, 0])
    y1 = y[known, 0]
    assert pinball(y1, q[known, 0], TASK.quantiles) < pinball(y1, flat[known, 0], TASK.quantiles)


def test_ewma_warm_up_rows_raise(panel, fitted):
    with pytest.raises(InsufficientDataError, match="warm-up"):
        fitted["ewma_vol"].predict(panel, DAYS[0], DAYS[40])


# --- leakage -------------------------------------------------------------------------------------


def _assert_same_state(a, b, path="model"):
    """Recursively compare every attribute (arrays, dicts, lists, sklearn estimators)."""
    if isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b, err_msg=path)
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _assert_same_state(a[k], b[k], f"{path}[{k!r}]")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same_state(x, y, f"{path}[{i}]")
    elif hasattr(a, "__dict__") and not isinstance(a, type):
        _assert_same_state(vars(a), vars(b), path)
    else:
        assert a == b or (a != a and b != b), path


@pytest.mark.parametrize("name", list(BASELINES))
def test_no_leakage_from_rows_after_train_end(panel, name):
    rng = np.random.default_rng(99)
    later = (panel[DATE] > TRAIN_END).to_numpy()
    columns = ["ret_1", "x1", "x2", "x3", *TASK.target_columns]
    changed = panel.with_columns(
        pl.Series(c, np.where(later, rng.standard_normal(panel.height) * 0.05, panel[c].to_numpy()))
        for c in columns
    )
    cfg = ForecastConfig()
    a = [m for m in make_baselines(TASK, cfg) if m.name == name][0].fit(panel, TRAIN_END)
    b = [m for m in make_baselines(TASK, cfg) if m.name == name][0].fit(changed, TRAIN_END)
    _assert_same_state(a, b)  # every fitted quantity
    np.testing.assert_array_equal(a.predict(panel, WARM, TRAIN_END), b.predict(changed, WARM, TRAIN_END))
    # Same fitted function: both models agree on the original panel everywhere.
    np.testing.assert_array_equal(a.predict(panel, WARM, TEST_END), b.predict(panel, WARM, TEST_END))
    if isinstance(a, PointBaseline):
        np.testing.assert_array_equal(
            a.predict_point(panel, WARM, TRAIN_END), b.predict_point(changed, WARM, TRAIN_END)
        )
    assert not np.array_equal(panel["x1"].to_numpy(), changed["x1"].to_numpy())  # the test bites


def test_zero_return_is_a_point_baseline():
    assert issubclass(ZeroReturn, PointBaseline) and issubclass(RidgeBaseline, PointBaseline)
    assert not issubclass(EwmaVol, PointBaseline)


# --- the panel helpers every model uses ----------------------------------------------------------


def test_in_key_order_keeps_a_sorted_frame_and_sorts_any_other(panel):
    """A frame already in (ticker, date) order comes back as the same object (no copy); shuffled,
    reversed within a ticker, or with a repeated key, it comes back sorted."""
    from forecast_core.models.forecaster import in_key_order, panel_columns

    ordered = panel.sort(TICKER, DATE)
    assert in_key_order(ordered) is ordered
    for other in (
        ordered.sample(fraction=1.0, shuffle=True, seed=1),
        ordered.sort(TICKER, DATE, descending=[False, True]),
        pl.concat([ordered.head(3), ordered.head(3)]),
    ):
        assert in_key_order(other).select(TICKER, DATE).equals(other.sort(TICKER, DATE).select(TICKER, DATE))
    narrow = panel_columns(ordered, TASK, "x1", "not_a_column")
    assert narrow.columns == [TICKER, DATE, "target_h1", "target_h5", "x1"]
