"""Risk measures on hand-computable cases: a drawdown never recovered counts to the end; PSR and
DSR match their formulas."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest

from forecast_core.backtest import risk


def test_drawdown_not_recovered_counts_to_the_end():
    depth, duration = risk.max_drawdown(np.array([0.1, -0.5, 0.1, 0.1]))
    assert depth == pytest.approx(0.5)
    assert duration == 3


def _moments(r: np.ndarray) -> tuple[float, float, float]:
    m, s = r.mean(), r.std(ddof=1)
    c = r - m
    return m / s, float(np.mean(c**3) / np.mean(c**2) ** 1.5), float(np.mean(c**4) / np.mean(c**2) ** 2)


def test_psr_and_dsr_match_the_direct_formulas():
    rng = np.random.default_rng(7)
    r = rng.standard_t(4, 500) * 0.01 + 0.001
    sr, g3, g4 = _moments(r)
    phi = NormalDist()
    psr = phi.cdf(sr * math.sqrt(499) / math.sqrt(1 - g3 * sr + (g4 - 1) / 4 * sr**2))
    assert risk.probabilistic_sharpe_ratio(r) == pytest.approx(psr, rel=1e-9)

    trials = np.array([sr, 0.02, -0.01, 0.05])
    v = trials.var(ddof=1)
    e = 0.5772156649015329
    sr0 = math.sqrt(v) * ((1 - e) * phi.inv_cdf(1 - 1 / 4) + e * phi.inv_cdf(1 - 1 / (4 * math.e)))
    dsr = phi.cdf((sr - sr0) * math.sqrt(499) / math.sqrt(1 - g3 * sr + (g4 - 1) / 4 * sr**2))
    assert risk.deflated_sharpe_ratio(r, trials, 4) == pytest.approx(dsr, rel=1e-9)
    assert risk.deflated_sharpe_ratio(r, trials, 4) < psr  # more trials, a higher bar
    assert risk.deflated_sharpe_ratio(r, trials[:1], 1) == pytest.approx(psr)  # one trial: the PSR
    assert math.isnan(risk.probabilistic_sharpe_ratio(np.zeros(10)))  # never traded: undefined
