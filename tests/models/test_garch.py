"""GJR-GARCH and the volatility blend on real prices of the embedded sample.

The panel is the project's own (`build_features`, `build_targets`, `assemble_panel`) for KO and
MSFT, 2009-2016; the recursion and the multi-step forecast are checked against `arch` itself.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import types
import warnings

import arch
import numpy as np
import pandas as pd
import polars as pl
import pytest
from arch import arch_model

from forecast_core.columns import DATE, TICKER
from forecast_core.config import ForecastConfig, UniverseConfig
from forecast_core.data.features import build_features, build_targets, feature_columns
from forecast_core.data.panel import assemble_panel, targets_long, targets_wide
from forecast_core.errors import InsufficientDataError, NotFittedError
from forecast_core.models import volatility
from forecast_core.models.baselines import BASELINES, EwmaVol, make_baselines
from forecast_core.models.continuation import STATE_SLACK
from forecast_core.models.forecaster import ForecastTask, rows_between
from forecast_core.models.garch import (
    STATIONARITY_TOL,
    GarchFallbackWarning,
    GjrGarch,
    VolBlend,
    fit_gjr,
    fit_gjr_remembered,
    gjr_conditional_variance,
    gjr_horizon_variance,
    gjr_variance,
    panel_variance,
)
from forecast_core.models.volatility import ewma_variance
from forecast_core.sources import SampleSource

TICKERS = ("KO", "MSFT")
CFG = ForecastConfig(universe=UniverseConfig(tickers=TICKERS, exogenous=("^GSPC",)))
TRAIN_END = dt.date(2014, 12, 31)
TEST_START, TEST_END = dt.date(2015, 2, 2), dt.date(2016, 6, 30)


def _panel(tickers=TICKERS, start=dt.date(2008, 1, 2), end=dt.date(2016, 12, 30)) -> pl.DataFrame:
    cfg = ForecastConfig(universe=UniverseConfig(tickers=tickers, exogenous=("^GSPC",)))
    prices = SampleSource().fetch([*tickers, "^GSPC"], start, end)
    universe = prices.filter(pl.col(TICKER).is_in(list(tickers)))
    targets = targets_long(build_targets(universe, cfg.horizons), cfg.horizons)
    return assemble_panel(build_features(prices, cfg), targets_wide(targets, cfg.horizons), prices)


@pytest.fixture(scope="module")
def panel() -> pl.DataFrame:
    return _panel()


@pytest.fixture(scope="module")
def task(panel) -> ForecastTask:
    return ForecastTask(tuple(feature_columns(panel)), CFG.horizons, CFG.quantiles)


@pytest.fixture(scope="module")
def garch(panel, task) -> GjrGarch:
    return GjrGarch.from_config(task, CFG).fit(panel, TRAIN_END)


def _returns(panel, ticker, end=None) -> np.ndarray:
    rows = panel.filter((pl.col(TICKER) == ticker) & (pl.col(DATE) <= (end or dt.date.max)))
    return rows.sort(DATE)["ret_1"].to_numpy()


def _fixed(r: np.ndarray, params):
    """arch's model of `r` in percent and its result with the raw-unit `params` held fixed."""
    model = arch_model(100 * r, mean="Zero", vol="GARCH", p=1, o=1, q=1, rescale=False)
    omega, alpha, gamma, beta = params
    return model, model.fix([omega * 1e4, alpha, gamma, beta])


# --- the recursions against arch -----------------------------------------------------------------


def test_filter_equals_arch_conditional_volatility(panel, garch):
    r = _returns(panel, "KO")  # the whole history, past train_end too: parameters fixed
    params = garch.params_["KO"]
    model, fixed = _fixed(r, params)
    backcast = model.volatility.backcast(100 * r) / 1e4
    mine = gjr_conditional_variance(r, params, backcast)
    assert mine.shape == (r.size + 1,)
    np.testing.assert_allclose(np.sqrt(mine[:-1]), fixed.conditional_volatility / 100, rtol=1e-10)


def test_multi_step_variance_equals_arch_forecast_sum(panel, garch):
    r = _returns(panel, "MSFT")
    params = garch.params_["MSFT"]
    model, fixed = _fixed(r, params)
    mine = gjr_conditional_variance(r, params, model.volatility.backcast(100 * r) / 1e4)
    ours = gjr_horizon_variance(mine[1:], params, (1, 2, 5))
    theirs = fixed.forecast(horizon=5, start=0, reindex=False).variance.to_numpy() / 1e4
    np.testing.assert_allclose(ours[:, 0], theirs[:, 0], rtol=1e-10)
    np.testing.assert_allclose(ours[:, 1], theirs[:, :2].sum(axis=1), rtol=1e-10)
    np.testing.assert_allclose(ours[:, 2], theirs.sum(axis=1), rtol=1e-10)


def test_fitted_parameters_are_arch_estimates_in_raw_units(panel, garch):
    r = _returns(panel, "KO", TRAIN_END)
    res = arch_model(100 * r, mean="Zero", vol="GARCH", p=1, o=1, q=1, rescale=False).fit(disp="off")
    omega, alpha, gamma, beta = res.params.to_numpy()
    np.testing.assert_allclose(garch.params_["KO"], (omega / 1e4, alpha, gamma, beta), rtol=1e-12)
    assert alpha + gamma / 2 + beta < 1 and set(garch.params_) == set(TICKERS)
    assert garch.fallback_tickers_ == {} and garch.integrated_tickers == []


def test_variance_carries_over_missing_returns_and_warms_up(panel, garch):
    r = _returns(panel, "KO")[:300].copy()
    r[100] = np.nan
    v = gjr_variance(r, garch.params_["KO"], (1, 5), warmup=20)
    assert np.isnan(v[:19]).all() and np.isfinite(v[19:]).all()
    np.testing.assert_array_equal(v[100], v[99])
    # Past the gap, the filter runs over the finite returns only.
    x = np.delete(r, 100)
    expected = gjr_variance(x, garch.params_["KO"], (1, 5), warmup=20)
    np.testing.assert_array_equal(np.delete(v, 100, axis=0), expected)


def test_panel_variance_is_each_tickers_own_filter_across_chunks(monkeypatch, panel, garch):
    """The recursions run a chunk of tickers at once, aligned on their finite returns: with chunks
    of two, a ticker with gaps, one shorter than the warm-up and an EWMA fallback give, bit for bit,
    what each ticker's own series gives alone."""
    monkeypatch.setattr(volatility, "CHUNK_TICKERS", 2)
    ko = panel.filter(pl.col(TICKER) == "KO").sort(DATE).select(TICKER, DATE, "ret_1")
    gappy = ko.with_columns(
        pl.lit("GAPS").alias(TICKER),
        pl.when(pl.int_range(pl.len()) % 37 == 3).then(None).otherwise(pl.col("ret_1")).alias("ret_1"),
    )
    short = ko.head(15).with_columns(pl.lit("SHORT").alias(TICKER))
    sorted_panel = pl.concat([gappy, ko, panel.select(ko.columns), short]).unique([TICKER, DATE])
    sorted_panel = sorted_panel.sort(TICKER, DATE)
    params = {"GAPS": garch.params_["KO"], "KO": garch.params_["KO"], "MSFT": garch.params_["MSFT"]}
    var = panel_variance(sorted_panel, 0.94, (1, 5), params)
    tickers = sorted_panel[TICKER].to_numpy()
    for t in ("GAPS", "KO", "MSFT", "SHORT"):
        r = sorted_panel["ret_1"].fill_null(np.nan).to_numpy()[tickers == t]
        own = gjr_variance(r, params[t], (1, 5)) if t in params else ewma_variance(r, 0.94)[:, None] * [1, 5]
        np.testing.assert_array_equal(var[tickers == t], own)
    assert np.isnan(var[tickers == "SHORT"]).all() and np.isfinite(var[tickers == "GAPS"][25:]).all()


def test_panel_variances_continue_from_a_carried_row_to_the_bit(monkeypatch, panel, garch):
    """The recursions continued from each ticker's (s2, next_variance) at a row give, over the rows
    after it, exactly what the whole history gives: the EWMA, GJR and the EWMA fallback, a
    ticker with gaps after the carried row, in chunks of two tickers."""
    monkeypatch.setattr(volatility, "CHUNK_TICKERS", 2)
    keys = panel.select(TICKER, DATE, "ret_1")
    gappy = keys.filter(pl.col(TICKER) == "KO").with_columns(
        pl.lit("GAPS").alias(TICKER),
        pl.when(pl.int_range(pl.len()) % 37 == 3).then(None).otherwise(pl.col("ret_1")).alias("ret_1"),
    )
    sorted_panel = pl.concat([keys, gappy]).sort(TICKER, DATE)
    params = {t: p for t, p in garch.params_.items() if t != "MSFT"} | {"GAPS": garch.params_["KO"]}
    whole = volatility.panel_variances(sorted_panel, 0.94, (1, 5), params)
    # Each ticker carried from its 300th-last row; GAPS from the row before one of its gaps.
    rows = sorted_panel.with_row_index("i")
    at = rows.group_by(TICKER).agg(pl.col("i").sort().get(-300))
    at = dict(zip(at[TICKER].to_list(), at["i"].to_list(), strict=True))
    at["GAPS"] = rows.filter(pl.col(TICKER) == "GAPS", pl.col("ret_1").is_null())["i"][-10] - 1
    carry = pl.DataFrame(
        {
            TICKER: list(at),
            "s2": [whole.s2[i] for i in at.values()],
            "next_variance": [whole.next_variance[i] for i in at.values()],
        }
    )
    index = np.arange(sorted_panel.height)
    after = index > np.array([at[t] for t in sorted_panel[TICKER].to_list()])
    tail = sorted_panel.filter(pl.Series(after))
    first_of_gaps = tail.filter(pl.col(TICKER) == "GAPS")["ret_1"][0]
    assert first_of_gaps is None and np.isnan(carry["next_variance"].to_numpy()).sum() == 1  # MSFT
    part = volatility.panel_variances(tail, 0.94, (1, 5), params, carry=carry)
    for name in ("ewma", "model", "s2", "next_variance"):
        np.testing.assert_array_equal(getattr(part, name), getattr(whole, name)[after])
    assert np.isfinite(part.model).all()
    with pytest.raises(ValueError, match="no recursion state for tickers"):
        volatility.panel_variances(tail, 0.94, (1, 5), params, carry=carry.filter(pl.col(TICKER) != "KO"))


@pytest.mark.parametrize(
    ("name", "mode"),
    [("ewma_vol", None), ("gjr_garch", None), ("vol_blend", "variance"), ("vol_blend", "quantile")],
)
def test_a_volatility_baseline_forecasts_from_its_stored_state_to_the_bit(panel, task, name, mode):
    """`forecast` continued from the state a previous `forecast` stored, over each ticker's rows
    after its `as_of` only, gives `predict`'s quantiles on the whole history, bit for bit, and the
    state the whole history gives."""
    train_end = dt.date(2019, 12, 31)
    model = make_baselines(task, ForecastConfig())[list(BASELINES).index(name)]
    if mode is not None:
        model = VolBlend(task, mode=mode)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(panel, train_end)
    days = panel[DATE].unique().sort().to_list()
    _, state = model.forecast(panel, days[-30], days[-30])
    assert state.columns == [TICKER, "as_of", "s2", "next_variance"]
    assert state["as_of"].unique().to_list() == [days[-30 - STATE_SLACK]]
    assert state["next_variance"].is_finite().all() == (name != "ewma_vol")
    tail = panel.join(state.select(TICKER, "as_of"), on=TICKER).filter(pl.col(DATE) > pl.col("as_of"))
    q, next_state = model.forecast(tail.drop("as_of"), days[-29], days[-1], carry=state)
    np.testing.assert_array_equal(q, model.predict(panel, days[-29], days[-1]))
    _, whole_state = model.forecast(panel, days[-29], days[-1])
    assert next_state.equals(whole_state) and next_state["as_of"].unique().to_list() == [
        days[-1 - STATE_SLACK]
    ]


# --- the forecaster ------------------------------------------------------------------------------


def test_registered_after_ewma_with_lambda_from_config(task):
    assert list(BASELINES)[3:] == ["ewma_vol", "gjr_garch", "vol_blend"]
    cfg = ForecastConfig(ewma_lambda=0.9)
    models = {m.name: m for m in make_baselines(task, cfg)}
    assert models["gjr_garch"].lam == 0.9
    assert models["vol_blend"].ewma.lam == 0.9 and models["vol_blend"].garch.lam == 0.9
    assert models["vol_blend"].mode == "variance"


def test_predict_before_fit_raises(panel, task):
    for model in (GjrGarch(task), VolBlend(task), VolBlend(task, mode="quantile")):
        with pytest.raises(NotFittedError, match="fit"):
            model.predict(panel, TEST_START, TEST_END)
        with pytest.raises(NotFittedError):
            model.state()


def test_quantiles_sorted_median_zero_and_scaled_by_the_filtered_variance(panel, garch):
    q = garch.predict(panel, TEST_START, TEST_END)
    rows = rows_between(panel, TEST_START, TEST_END)
    assert q.shape == (rows.height, 2, 3) and q.dtype == np.float32
    assert (np.diff(q, axis=-1) >= 0).all() and (q[..., 0] < 0).all() and (q[..., 2] > 0).all()
    assert (q[..., 1] == 0).all()
    # Row by row: sqrt(var_h) * z, var_h from the ticker's whole history up to the row.
    ko = rows[TICKER].to_numpy() == "KO"
    r = _returns(panel, "KO", TEST_END)
    var = gjr_variance(r, garch.params_["KO"], (1, 5))[-ko.sum() :]
    expected = (np.sqrt(var)[:, :, None] * garch.z_[None]).astype(np.float32)
    np.testing.assert_allclose(q[ko], expected, rtol=1e-6)
    # The band adapts: wider after the August 2015 sell-off than before it.
    dates = rows[DATE].to_numpy()
    width = q[ko, 0, 2] - q[ko, 0, 0]
    assert (
        width[dates[ko] == np.datetime64("2015-08-25")][0]
        > 1.3 * width[dates[ko] == np.datetime64("2015-07-01")][0]
    )


def test_no_look_ahead(panel, task, garch):
    rng = np.random.default_rng(5)
    later = (panel[DATE] > TRAIN_END).to_numpy()
    cols = ["ret_1", *task.target_columns]
    changed = panel.with_columns(
        pl.Series(c, np.where(later, rng.standard_normal(panel.height) * 0.05, panel[c].to_numpy()))
        for c in cols
    )
    other = GjrGarch.from_config(task, CFG).fit(changed, TRAIN_END)
    assert other.params_ == garch.params_ and other.fallback_tickers_ == garch.fallback_tickers_
    np.testing.assert_array_equal(other.z_, garch.z_)
    # A row's forecast does not move when later returns change.
    cut = dt.date(2015, 9, 30)
    after = (panel[DATE] > cut).to_numpy()
    shocked = panel.with_columns(pl.Series("ret_1", np.where(after, 0.2, panel["ret_1"].to_numpy())))
    np.testing.assert_array_equal(
        garch.predict(shocked, TEST_START, cut), garch.predict(panel, TEST_START, cut)
    )
    assert not np.array_equal(
        garch.predict(shocked, TEST_START, TEST_END), garch.predict(panel, TEST_START, TEST_END)
    )


def test_warm_up_rows_raise_naming_the_ticker(panel, garch):
    first = panel[DATE].min()
    with pytest.raises(InsufficientDataError, match=r"warm-up .*'KO'"):
        garch.predict(panel, first, TEST_END)


def _with_bad_tickers(panel: pl.DataFrame) -> pl.DataFrame:
    """The panel plus FLAT (a constant 0.1% a day) and NEW (listed 120 sessions before train_end)."""
    ko = panel.filter(pl.col(TICKER) == "KO")
    h = {c: int(c.removeprefix("target_h")) for c in ko.columns if c.startswith("target_h")}
    flat = ko.with_columns(
        pl.lit("FLAT").alias(TICKER),
        pl.lit(0.001).alias("ret_1"),
        *[(pl.col(c).is_not_null().cast(pl.Float64) * 0.001 * k).alias(c) for c, k in h.items()],
    )
    days = ko.filter(pl.col(DATE) <= TRAIN_END)[DATE]
    new = panel.filter((pl.col(TICKER) == "MSFT") & (pl.col(DATE) > days[-120]))
    return pl.concat([panel, flat, new.with_columns(pl.lit("NEW").alias(TICKER))])


def test_fallback_warns_names_the_tickers_and_uses_the_ewma_variance(panel, task):
    data = _with_bad_tickers(panel)
    with pytest.warns(GarchFallbackWarning, match=r"2 ticker\(s\).*FLAT: constant returns.*NEW: 119 returns"):
        model = GjrGarch.from_config(task, CFG).fit(data, TRAIN_END)
    assert set(model.fallback_tickers_) == {"FLAT", "NEW"} and set(model.params_) == set(TICKERS)
    assert "fewer than the 250" in model.fallback_tickers_["NEW"]
    # Their variance is EwmaVol's sigma^2 * h, exactly.
    history = data.filter(pl.col(DATE) <= TEST_END).sort(TICKER, DATE)
    var = model.horizon_variance(history)
    sigma = EwmaVol(task, lam=CFG.ewma_lambda).with_sigma(history)["sigma"].to_numpy()
    new = history[TICKER].to_numpy() == "NEW"
    np.testing.assert_allclose(var[new], sigma[new, None] ** 2 * np.array([1.0, 5.0]), rtol=1e-12)
    # No further warning at predict time for tickers already reported at fit.
    with warnings.catch_warnings():
        warnings.simplefilter("error", GarchFallbackWarning)
        q = model.predict(data, TEST_START, TEST_END)
    assert np.isfinite(q).all()


def test_unseen_ticker_at_predict_falls_back_with_a_warning(panel, task, garch):
    pep = _panel(("PEP",)).filter(pl.col(DATE) > dt.date(2012, 1, 1))
    both = pl.concat([panel, pep.select(panel.columns)])
    with pytest.warns(GarchFallbackWarning, match=r"PEP: unseen at fit time"):
        q = garch.predict(both, TEST_START, TEST_END)
    rows = rows_between(both, TEST_START, TEST_END)
    is_pep = rows[TICKER].to_numpy() == "PEP"
    sigma = EwmaVol(garch.task, lam=garch.lam).with_sigma(both)
    sigma = rows_between(sigma, TEST_START, TEST_END)["sigma"].to_numpy()[is_pep]
    expected = sigma[:, None, None] * np.sqrt([1.0, 5.0])[None, :, None] * garch.z_[None]
    np.testing.assert_allclose(q[is_pep], expected.astype(np.float32), rtol=1e-6)
    np.testing.assert_array_equal(q[~is_pep], garch.predict(panel, TEST_START, TEST_END))


def test_fit_on_the_stationarity_bound_is_kept_as_integrated(task):
    # AAPL over 1990-10..2017-06 (the sample's first fold): arch's optimum sits on the bound.
    prices = SampleSource().fetch(["AAPL"], dt.date(1990, 10, 12), dt.date(2017, 6, 6))
    lp = pl.col("adj_close").log()
    data = prices.select(
        TICKER, DATE, ret_1=lp.diff(), target_h1=lp.shift(-1) - lp, target_h5=lp.shift(-5) - lp
    ).filter(pl.col("ret_1").is_not_null())
    r = data["ret_1"].to_numpy()
    res = arch_model(100 * r, mean="Zero", vol="GARCH", p=1, o=1, q=1, rescale=False).fit(disp="off")
    _, a, g, b = res.params.to_numpy()
    assert abs(a + g / 2 + b - 1) < STATIONARITY_TOL  # on the bound, to rounding
    with warnings.catch_warnings():
        warnings.simplefilter("error", GarchFallbackWarning)  # not a fallback
        model = GjrGarch(task).fit(data, data[DATE].max())
    _, alpha, gamma, beta = model.params_["AAPL"]
    assert 1 - STATIONARITY_TOL <= alpha + gamma / 2 + beta <= 1 + 1e-15  # clipped onto 1 if above
    assert model.integrated_tickers == ["AAPL"]
    assert np.isfinite(model.predict(data, dt.date(2017, 1, 3), dt.date(2017, 5, 26))).all()


class _Result:
    def __init__(self, params, flag=0):
        self.params = pd.Series(params, index=["omega", "alpha[1]", "gamma[1]", "beta[1]"])
        self.convergence_flag = flag
        self.optimization_result = types.SimpleNamespace(message="Iteration limit reached")


@pytest.mark.parametrize(
    ("result", "reason"),
    [
        (_Result([0.02, 0.05, 0.1, 0.9], flag=9), r"did not converge \(flag 9: Iteration limit"),
        (_Result([0.02, 0.05, 0.1, 0.9 + 10 * STATIONARITY_TOL]), r"non-stationary: persistence .* > 1"),
        (_Result([0.02, np.nan, 0.1, 0.8]), "non-finite parameters"),
        (_Result([0.02, 0.1, -0.3, 0.8]), "outside the GJR constraints"),
        (ValueError("singular"), "arch raised ValueError: singular"),
    ],
)
def test_unusable_fits_are_refused_with_their_reason(monkeypatch, panel, result, reason):
    class _Model:
        def __init__(self, *args, **kwargs):
            pass

        def fit(self, **kwargs):
            if isinstance(result, Exception):
                raise result
            return result

    monkeypatch.setattr(arch, "arch_model", _Model)
    params, why = fit_gjr(_returns(panel, "KO", TRAIN_END))
    assert params is None and re.search(reason, why)


def test_a_repeated_fit_is_remembered_and_a_new_input_is_fitted(monkeypatch, panel):
    """`fit_gjr_remembered` returns the earlier fit of the same returns without fitting again
    (arch is broken below, so a refit would fail), and fits returns it has not seen."""
    monkeypatch.setattr(volatility, "_remembered", type(volatility._remembered)())
    r = _returns(panel, "KO", TRAIN_END)
    first = fit_gjr_remembered(r)
    assert first == fit_gjr(r) and first[0] is not None and len(volatility._remembered) == 1

    class _Broken:
        def __init__(self, *args, **kwargs):
            raise ValueError("refitted")

    monkeypatch.setattr(arch, "arch_model", _Broken)
    assert fit_gjr_remembered(r.copy()) == first
    assert fit_gjr_remembered(r[1:])[1] == "arch raised ValueError: refitted"
    assert len(volatility._remembered) == 2


def test_state_round_trip_gives_identical_predictions(panel, task):
    data = _with_bad_tickers(panel)
    with pytest.warns(GarchFallbackWarning):
        models = [
            GjrGarch.from_config(task, CFG).fit(data, TRAIN_END),
            VolBlend(task, mode="variance").fit(data, TRAIN_END),
            VolBlend(task, mode="quantile").fit(data, TRAIN_END),
        ]
    for model in models:
        state = json.loads(json.dumps(model.state()))
        restored = type(model).from_state(task, CFG, state)
        assert restored.fitted
        np.testing.assert_array_equal(
            restored.predict(data, TEST_START, TEST_END), model.predict(data, TEST_START, TEST_END)
        )
    assert json.loads(json.dumps(models[0].state()))["fallback_tickers"].keys() == {"FLAT", "NEW"}
    other = ForecastTask(task.feature_columns, (1, 10), task.quantiles)
    with pytest.raises(ValueError, match="horizons"):
        GjrGarch.from_state(other, CFG, models[0].state())
    with pytest.raises(ValueError, match="gjr_garch"):
        GjrGarch.from_state(task, CFG, models[1].state())


def test_vol_blend_lies_between_its_parents(panel, task, garch):
    ewma = EwmaVol.from_config(task, CFG).fit(panel, TRAIN_END)
    by_variance = VolBlend.from_config(task, CFG).fit(panel, TRAIN_END)
    history = panel.filter(pl.col(DATE) <= TEST_END).sort(TICKER, DATE)
    v_ewma = ewma.with_sigma(history)["sigma"].to_numpy()[:, None] ** 2 * np.array([1.0, 5.0])
    v_gjr = garch.horizon_variance(history)
    v = by_variance.blended_variance(history)
    np.testing.assert_allclose(v, (v_ewma + v_gjr) / 2, rtol=1e-12)
    ok = np.isfinite(v).all(axis=1)
    assert (np.minimum(v_ewma, v_gjr)[ok] <= v[ok]).all() and (v[ok] <= np.maximum(v_ewma, v_gjr)[ok]).all()
    q = by_variance.predict(panel, TEST_START, TEST_END)
    assert (q[..., 1] == 0).all() and (np.diff(q, axis=-1) >= 0).all()
    # Quantile mode: each quantile between the parents' (their average).
    q_e, q_g = ewma.predict(panel, TEST_START, TEST_END), garch.predict(panel, TEST_START, TEST_END)
    q_avg = VolBlend(task, mode="quantile").fit(panel, TRAIN_END).predict(panel, TEST_START, TEST_END)
    np.testing.assert_allclose(q_avg, (q_e.astype(float) + q_g) / 2, rtol=1e-6)
    tol = 1e-7
    assert (np.minimum(q_e, q_g) - tol <= q_avg).all() and (q_avg <= np.maximum(q_e, q_g) + tol).all()
    assert not np.allclose(q_e, q_g)  # the parents differ, so the test bites


def test_a_fit_just_above_the_bound_is_clipped_onto_it(monkeypatch, panel):
    class _Model:
        def __init__(self, *args, **kwargs):
            pass

        def fit(self, **kwargs):
            return _Result([0.02, 0.05, 0.1, 0.9 + STATIONARITY_TOL / 2])

    monkeypatch.setattr(arch, "arch_model", _Model)
    (omega, alpha, gamma, beta), why = fit_gjr(_returns(panel, "KO", TRAIN_END))
    assert why is None and omega == pytest.approx(0.02 / 1e4, rel=1e-12)
    assert alpha + gamma / 2 + beta == pytest.approx(1.0, abs=1e-15) and (alpha, gamma) == (0.05, 0.1)


@pytest.mark.parametrize("name", ["ewma_vol", "gjr_garch", "vol_blend"])
def test_scales_are_the_bands_unit_for_the_lstm_prior(panel, task, name):
    """`scales` (what the LSTM's prior standardises targets by) is the h-session scale behind the
    model's own bands: each band is `scale * z_` row by row, and it round-trips through `state`."""
    model = BASELINES[name].from_config(task, CFG).fit(panel, TRAIN_END)
    rows = rows_between(panel, TEST_START, TEST_END)
    in_test = (
        panel.sort(TICKER, DATE).select(pl.col(DATE).is_between(TEST_START, TEST_END)).to_series().to_numpy()
    )
    scale = model.scales(panel)[in_test]
    assert scale.shape == (rows.height, len(task.horizons)) and np.all(scale > 0)
    q = model.predict(panel, TEST_START, TEST_END)
    np.testing.assert_allclose(q, scale[:, :, None] * model.z_[None], rtol=2e-6, atol=1e-9)
    restored = BASELINES[name].from_state(task, CFG, json.loads(json.dumps(model.state())))
    np.testing.assert_array_equal(restored.scales(panel), model.scales(panel))
