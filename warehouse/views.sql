-- Views for analysts and downstream tools; recreated on every schema application.

CREATE OR REPLACE VIEW latest_forecasts AS
SELECT *
FROM forecasts
QUALIFY row_number() OVER (PARTITION BY ticker, horizon ORDER BY as_of_date DESC, created_at DESC) = 1;

CREATE OR REPLACE VIEW model_leaderboard AS
WITH fold_rank AS (
    SELECT fold, model, horizon,
           rank() OVER (PARTITION BY fold, horizon ORDER BY value) AS fold_pinball_rank
    FROM fold_metrics WHERE metric = 'pinball'
),
per_model AS (
    SELECT
        model,
        horizon,
        count(DISTINCT fold) AS n_folds,
        avg(value) FILTER (WHERE metric = 'pinball') AS pinball,
        avg(value) FILTER (WHERE metric = 'coverage_80') AS coverage_80,
        min(value) FILTER (WHERE metric = 'coverage_80') AS coverage_80_min,
        max(value) FILTER (WHERE metric = 'coverage_80') AS coverage_80_max,
        avg(value) FILTER (WHERE metric = 'mae') AS mae,
        avg(value) FILTER (WHERE metric = 'rmse') AS rmse,
        avg(value) FILTER (WHERE metric = 'mape_price') AS mape_price,
        avg(value) FILTER (WHERE metric = 'directional_accuracy') AS directional_accuracy,
        avg(value) FILTER (WHERE metric = 'dm_stat') AS dm_stat_mean,
        max(value) FILTER (WHERE metric = 'dm_pvalue') AS dm_pvalue_max,
        min(value) FILTER (WHERE metric = 'dm_pvalue') AS dm_pvalue_min,
        avg(value) FILTER (WHERE metric = 'dm_pinball_stat') AS dm_pinball_stat_mean,
        min(value) FILTER (WHERE metric = 'dm_pinball_pvalue') AS dm_pinball_pvalue_min,
        max(value) FILTER (WHERE metric = 'dm_pinball_pvalue') AS dm_pinball_pvalue_max,
        avg(value) FILTER (WHERE metric = 'dm_best_pinball_stat') AS dm_best_pinball_stat_mean,
        avg(value) FILTER (WHERE metric = 'dm_best_stat') AS dm_best_stat_mean,
        avg(value) FILTER (WHERE metric = 'pinball_seed_std') AS pinball_seed_std,
        max(value) FILTER (WHERE metric = 'n_seeds') AS n_seeds
    FROM fold_metrics
    GROUP BY model, horizon
),
-- Per fold and horizon, the sign of each DM statistic with p < 0.05 (negative: the LSTM's loss
-- is lower), so that a minimum p-value never hides which way a fold went.
dm_folds AS (
    SELECT
        s.model,
        s.horizon,
        count(*) FILTER (WHERE s.metric = 'dm_pinball_stat' AND s.value < 0 AND p.value < 0.05) AS dm_pinball_better_folds,
        count(*) FILTER (WHERE s.metric = 'dm_pinball_stat' AND s.value > 0 AND p.value < 0.05) AS dm_pinball_worse_folds,
        count(*) FILTER (WHERE s.metric = 'dm_best_pinball_stat' AND s.value < 0 AND p.value < 0.05) AS dm_best_pinball_better_folds,
        count(*) FILTER (WHERE s.metric = 'dm_best_pinball_stat' AND s.value > 0 AND p.value < 0.05) AS dm_best_pinball_worse_folds
    FROM fold_metrics s
    JOIN fold_metrics p
      ON p.fold = s.fold AND p.model = s.model AND p.horizon = s.horizon
     AND p.metric = replace(s.metric, '_stat', '_pvalue')
    WHERE s.metric IN ('dm_pinball_stat', 'dm_best_pinball_stat')
    GROUP BY s.model, s.horizon
)
SELECT
    p.*,
    d.dm_pinball_better_folds,
    d.dm_pinball_worse_folds,
    d.dm_best_pinball_better_folds,
    d.dm_best_pinball_worse_folds,
    (SELECT count(*) FROM fold_rank r
      WHERE r.model = p.model AND r.horizon = p.horizon AND r.fold_pinball_rank = 1) AS folds_best,
    1 - p.pinball / z.pinball AS pinball_skill_vs_zero_return,
    1 - p.rmse / z.rmse AS rmse_skill_vs_zero_return,
    rank() OVER (PARTITION BY p.horizon ORDER BY p.pinball) AS pinball_rank
FROM per_model p
LEFT JOIN per_model z ON z.model = 'zero_return' AND z.horizon = p.horizon
LEFT JOIN dm_folds d ON d.model = p.model AND d.horizon = p.horizon
ORDER BY p.horizon, p.pinball;

-- Accuracy of the published forecasts over the last 20 and 60 scored forecasts per ticker,
-- horizon and model (the nightly job's running report card).
CREATE OR REPLACE VIEW rolling_accuracy AS
WITH ranked AS (
    SELECT *, row_number() OVER (PARTITION BY ticker, horizon, model ORDER BY as_of_date DESC) AS recency
    FROM forecast_scores
)
SELECT
    ticker,
    horizon,
    model,
    max(as_of_date) AS last_as_of_date,
    count(*) FILTER (WHERE recency <= 20) AS n_20,
    avg(abs_pct_error) FILTER (WHERE recency <= 20) AS mape_20,
    avg(covered_80::INTEGER) FILTER (WHERE recency <= 20) AS coverage_80_20,
    avg(pinball) FILTER (WHERE recency <= 20) AS pinball_20,
    count(*) FILTER (WHERE recency <= 60) AS n_60,
    avg(abs_pct_error) FILTER (WHERE recency <= 60) AS mape_60,
    avg(covered_80::INTEGER) FILTER (WHERE recency <= 60) AS coverage_80_60,
    avg(pinball) FILTER (WHERE recency <= 60) AS pinball_60
FROM ranked
GROUP BY ticker, horizon, model;

-- Calibration over time: the share of realised returns at or below each forecast quantile
-- (ideally 0.1, 0.5 and 0.9) and inside the 80% band, per horizon, model and target month.
CREATE OR REPLACE VIEW calibration AS
SELECT
    s.horizon,
    s.model,
    CAST(date_trunc('month', s.target_date) AS DATE) AS month,
    count(*) AS n,
    avg((s.actual_log_return <= f.q10)::INTEGER) AS share_below_q10,
    avg((s.actual_log_return <= f.q50)::INTEGER) AS share_below_q50,
    avg((s.actual_log_return <= f.q90)::INTEGER) AS share_below_q90,
    avg(s.covered_80::INTEGER) AS coverage_80
FROM forecast_scores s
JOIN forecasts f USING (as_of_date, ticker, horizon, model_version)
GROUP BY s.horizon, s.model, month;

-- The strategy backtest at portfolio level (equal weight across tickers): every strategy's key
-- metrics side by side per period, the LSTM's first, then the baselines', then buy-and-hold's,
-- with the difference to buy-and-hold's Sharpe ratio and CAGR.
CREATE OR REPLACE VIEW strategy_comparison AS
WITH p AS (
    SELECT
        strategy,
        period,
        max(value) FILTER (WHERE metric = 'n_sessions') AS n_sessions,
        max(value) FILTER (WHERE metric = 'cagr') AS cagr,
        max(value) FILTER (WHERE metric = 'ann_volatility') AS ann_volatility,
        max(value) FILTER (WHERE metric = 'sharpe') AS sharpe,
        max(value) FILTER (WHERE metric = 'sortino') AS sortino,
        max(value) FILTER (WHERE metric = 'max_drawdown') AS max_drawdown,
        max(value) FILTER (WHERE metric = 'max_drawdown_duration') AS max_drawdown_duration,
        max(value) FILTER (WHERE metric = 'hit_rate') AS hit_rate,
        max(value) FILTER (WHERE metric = 'profit_factor') AS profit_factor,
        max(value) FILTER (WHERE metric = 'turnover') AS turnover,
        max(value) FILTER (WHERE metric = 'exposure') AS exposure,
        max(value) FILTER (WHERE metric = 'psr') AS psr,
        max(value) FILTER (WHERE metric = 'dsr') AS dsr,
        max(value) FILTER (WHERE metric = 'n_trials') AS n_trials
    FROM backtest_metrics
    WHERE ticker = 'portfolio'
    GROUP BY strategy, period
)
SELECT
    p.period,
    p.strategy,
    CASE p.strategy WHEN 'lstm' THEN 'model' WHEN 'buy_and_hold' THEN 'benchmark'
                    WHEN 'published' THEN 'published' ELSE 'baseline' END AS role,
    p.* EXCLUDE (strategy, period),
    p.sharpe - b.sharpe AS sharpe_vs_buy_and_hold,
    p.cagr - b.cagr AS cagr_vs_buy_and_hold
FROM p
LEFT JOIN p b ON b.strategy = 'buy_and_hold' AND b.period = p.period
ORDER BY
    p.period,
    CASE p.strategy WHEN 'lstm' THEN 0 WHEN 'published' THEN 0 WHEN 'buy_and_hold' THEN 2 ELSE 1 END,
    p.sharpe DESC NULLS LAST;

-- The prices exactly as price vintage `v` stored them: rows stored by v or earlier and not yet
-- replaced by then (raw_prices.vintage <= v), plus the replaced values valid at v.
CREATE OR REPLACE MACRO prices_as_of(v) AS TABLE
    SELECT ticker, date, open, high, low, close, adj_close, volume, source, ingested_at, vintage
    FROM raw_prices
    WHERE vintage <= v
    UNION ALL
    SELECT ticker, date, open, high, low, close, adj_close, volume, source, ingested_at, vintage
    FROM raw_prices_replaced
    WHERE vintage <= v AND replaced_by > v;
