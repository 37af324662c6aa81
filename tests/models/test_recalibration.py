"""Online band recalibration (adaptive conformal inference): point in time, median untouched, and
it moves a miscalibrated band's coverage towards the target."""

import numpy as np

from forecast_core.models.recalibration import recalibrate

QUANTILES = (0.1, 0.5, 0.9)
HORIZONS = (1, 5)


def stream(n_days: int = 600, n_tickers: int = 20, width: float = 0.6, seed: int = 0):
    """Gaussian outcomes with bands `width` times too narrow: q = N^-1(tau) * width."""
    rng = np.random.default_rng(seed)
    y = rng.standard_normal((n_days * n_tickers, len(HORIZONS)))
    z = np.array([-1.2815516, 0.0, 1.2815516]) * width
    q = np.broadcast_to(z, (n_days * n_tickers, len(HORIZONS), 3)).astype(np.float32).copy()
    days = np.repeat(np.arange(n_days), n_tickers)
    return q, y, days


def coverage(q: np.ndarray, y: np.ndarray, h: int) -> float:
    return float(np.mean((y[:, h] >= q[:, h, 0]) & (y[:, h] <= q[:, h, 2])))


def test_a_too_narrow_band_is_widened_towards_80_percent_coverage():
    q, y, days = stream()
    out = recalibrate(q, y, days, HORIZONS, QUANTILES, gamma=0.05)
    late = days >= 300  # after the factor has adapted
    for h in range(len(HORIZONS)):
        assert coverage(q[late], y[late], h) < 0.6  # P(|N(0,1)| < 0.6 x 1.2816) = 0.56
        assert abs(coverage(out[late], y[late], h) - 0.8) < 0.03
    np.testing.assert_array_equal(out[:, :, 1], q[:, :, 1])  # the median never moves
    assert np.all(np.diff(out, axis=-1) >= 0)


def test_a_session_uses_only_outcomes_known_by_then():
    """Changing outcomes from session t on (and those of the last h sessions before t, which
    mature at t or later) leaves every recalibrated quantile before t unchanged."""
    q, y, days = stream(n_days=200)
    out = recalibrate(q, y, days, HORIZONS, QUANTILES, gamma=0.05)
    t = 120
    changed = y.copy()
    for h_i, h in enumerate(HORIZONS):
        changed[days >= t - h, h_i] = 50.0  # every one of these would be a miss
    again = recalibrate(q, changed, days, HORIZONS, QUANTILES, gamma=0.05)
    np.testing.assert_array_equal(again[days < t], out[days < t])
    assert not np.array_equal(again[days >= t + 1], out[days >= t + 1])


def test_unknown_outcomes_leave_the_band_as_it_was():
    q, y, days = stream(n_days=50)
    out = recalibrate(q, np.full_like(y, np.nan), days, HORIZONS, QUANTILES, gamma=0.05)
    np.testing.assert_array_equal(out, q)
