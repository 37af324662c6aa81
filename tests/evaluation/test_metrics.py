"""Metrics against hand computations and a direct implementation of the HLN-corrected DM test."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from forecast_core.evaluation import metrics


def test_mae_rmse_by_hand():
    y, y_hat = np.array([1.0, 2.0, 3.0]), np.array([1.0, 3.0, 1.0])
    assert metrics.mae(y, y_hat) == pytest.approx(1.0)  # (0 + 1 + 2) / 3
    assert metrics.rmse(y, y_hat) == pytest.approx(math.sqrt(5 / 3))  # sqrt((0 + 1 + 4) / 3)


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="shapes differ"):
        metrics.mae(np.zeros(3), np.zeros(4))


def test_mape_price_by_hand():
    last_close = np.array([100.0, 50.0])
    y = np.array([math.log(1.1), 0.0])  # actual prices 110, 50
    y_hat = np.array([0.0, math.log(1.2)])  # predicted prices 100, 60
    expected = (10 / 110 + 10 / 50) / 2 * 100
    assert metrics.mape_price(last_close, y, y_hat) == pytest.approx(expected)
    # The price level cancels out of each term.
    assert metrics.mape_price(last_close * 7.0, y, y_hat) == pytest.approx(expected)


def test_directional_accuracy_by_hand_and_zero_convention():
    y = np.array([0.1, -0.2, 0.0, -0.1])
    y_hat = np.array([0.2, 0.1, -0.1, 0.0])
    # up/up hit; up/down miss; down vs 0 ("up") miss; 0 ("up") vs down miss.
    assert metrics.directional_accuracy(y, y_hat) == pytest.approx(0.25)
    # A zero forecast scores the share of non-negative outcomes (0.1 and 0.0).
    assert metrics.directional_accuracy(y, np.zeros(4)) == pytest.approx(0.5)


def test_pinball_by_hand():
    y = np.array([1.0, 0.0])
    q = np.array([[0.5, 1.0, 2.0], [-1.0, 0.0, 1.0]])
    taus = (0.1, 0.5, 0.9)
    # row 0: errors y - q = [0.5, 0, -1]  -> 0.1*0.5, 0, (0.9-1)*(-1) = 0.05, 0, 0.1
    # row 1: errors y - q = [1, 0, -1]    -> 0.1, 0, 0.1
    assert metrics.pinball(y, q, taus) == pytest.approx((0.05 + 0.1 + 0.1 + 0.1) / 6)
    # At tau = 0.5 pinball is half the absolute error.
    assert metrics.pinball(y, q[:, [1]], (0.5,)) == pytest.approx(0.5 * metrics.mae(y, q[:, 1]))
    with pytest.raises(ValueError):
        metrics.pinball(y, q, (0.1, 0.5))


def test_coverage_is_closed_interval():
    y = np.array([0.0, 1.0, 2.0, 3.0])
    assert metrics.coverage(y, np.zeros(4), np.ones(4)) == pytest.approx(0.5)


def _dm_reference(loss_a, loss_b, h):
    """Diebold-Mariano with HLN correction, written out term by term."""
    d = [a - b for a, b in zip(loss_a, loss_b)]
    n = len(d)
    mean = sum(d) / n
    gammas = []
    for k in range(h):
        gammas.append(sum((d[t] - mean) * (d[t - k] - mean) for t in range(k, n)) / n)
    var = (gammas[0] + 2 * sum(gammas[1:])) / n
    dm = mean / math.sqrt(var)
    hln = dm * math.sqrt((n + 1 - 2 * h + h * (h - 1) / n) / n)
    return hln, 2 * (1 - stats.t.cdf(abs(hln), df=n - 1))


@pytest.mark.parametrize("h", [1, 3, 5])
def test_diebold_mariano_matches_direct_hln_formula(h):
    rng = np.random.default_rng(1)
    n = 60
    shocks = rng.standard_normal(n + 4)
    loss_a = np.abs(shocks[4:] + 0.5 * shocks[:-4]) + 0.1  # autocorrelated losses
    loss_b = np.abs(rng.standard_normal(n)) + 0.3
    stat, p = metrics.diebold_mariano(loss_a, loss_b, h)
    ref_stat, ref_p = _dm_reference(list(loss_a), list(loss_b), h)
    assert stat == pytest.approx(ref_stat, rel=1e-10)
    assert p == pytest.approx(ref_p, rel=1e-8)
    # Swapping the forecasts flips the sign and keeps the p-value.
    stat_ba, p_ba = metrics.diebold_mariano(loss_b, loss_a, h)
    assert stat_ba == pytest.approx(-stat) and p_ba == pytest.approx(p)


def test_diebold_mariano_h1_is_t_test_with_population_variance():
    rng = np.random.default_rng(2)
    d = rng.standard_normal(40) + 0.2
    stat, _ = metrics.diebold_mariano(d, np.zeros(40), 1)
    n = 40
    expected = d.mean() / math.sqrt(d.var() / n) * math.sqrt((n - 1) / n)
    assert stat == pytest.approx(expected)


def test_diebold_mariano_detects_clearly_better_forecast():
    rng = np.random.default_rng(3)
    y = rng.standard_normal(500)
    loss_a = (y - (y + 0.5 * rng.standard_normal(500))) ** 2
    loss_b = (y - (y + 1.5 * rng.standard_normal(500))) ** 2
    stat, p = metrics.diebold_mariano(loss_a, loss_b, horizon=5)
    assert stat < 0 and p < 0.01


def test_diebold_mariano_equal_forecasts_not_rejected():
    rng = np.random.default_rng(4)
    loss_a, loss_b = rng.exponential(size=300), rng.exponential(size=300)
    stat, p = metrics.diebold_mariano(loss_a, loss_b, horizon=1)
    assert math.isfinite(stat) and p > 0.01


@pytest.mark.parametrize(
    "loss_a, loss_b, h",
    [
        (np.arange(10.0), np.arange(10.0), 1),  # identical losses
        (np.full(10, 0.1) + np.arange(10.0), np.arange(10.0), 2),  # constant differential
        (np.array([1.0, 2.0]), np.array([0.0, 0.0]), 1),  # n too small
        (np.array([1.0, 2.0, 0.5, 3.0]), np.zeros(4), 4),  # HLN factor <= 0 (h too long)
    ],
)
def test_diebold_mariano_degenerate_cases_are_nan(loss_a, loss_b, h):
    stat, p = metrics.diebold_mariano(loss_a, loss_b, h)
    assert math.isnan(stat) and math.isnan(p)


def test_diebold_mariano_rejects_bad_horizon():
    with pytest.raises(ValueError, match="horizon"):
        metrics.diebold_mariano(np.ones(5), np.zeros(5), 0)


def test_panel_diebold_mariano_averages_across_tickers_per_date():
    rng = np.random.default_rng(5)
    n_dates, n_tickers = 80, 4
    dates = np.repeat(np.arange("2020-01-01", n_dates, dtype="datetime64[D]"), n_tickers)
    common = np.repeat(rng.standard_normal(n_dates), n_tickers)  # cross-sectional dependence
    loss_a = np.abs(common + 0.3 * rng.standard_normal(dates.size))
    loss_b = np.abs(common + 0.3 * rng.standard_normal(dates.size)) + 0.05
    daily_a = (loss_a).reshape(n_dates, n_tickers).mean(axis=1)
    daily_b = (loss_b).reshape(n_dates, n_tickers).mean(axis=1)
    expected = metrics.diebold_mariano(daily_a, daily_b, 5)
    order = rng.permutation(dates.size)  # row order must not matter
    got = metrics.panel_diebold_mariano(loss_a[order], loss_b[order], dates[order], 5)
    assert got == pytest.approx(expected)
    assert got[0] < 0
