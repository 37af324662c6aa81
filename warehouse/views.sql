-- Views for analysts and downstream tools; recreated on every schema application.

CREATE OR REPLACE VIEW latest_forecasts AS
SELECT *
FROM forecasts
QUALIFY row_number() OVER (PARTITION BY ticker, horizon ORDER BY as_of_date DESC, created_at DESC) = 1;

CREATE OR REPLACE VIEW model_leaderboard AS
WITH per_model AS (
    SELECT
        model,
        horizon,
        count(DISTINCT fold) AS n_folds,
        avg(value) FILTER (WHERE metric = 'pinball') AS pinball,
        avg(value) FILTER (WHERE metric = 'coverage_80') AS coverage_80,
        avg(value) FILTER (WHERE metric = 'mae') AS mae,
        avg(value) FILTER (WHERE metric = 'rmse') AS rmse,
        avg(value) FILTER (WHERE metric = 'mape_price') AS mape_price,
        avg(value) FILTER (WHERE metric = 'directional_accuracy') AS directional_accuracy,
        avg(value) FILTER (WHERE metric = 'dm_stat') AS dm_stat_mean,
        max(value) FILTER (WHERE metric = 'dm_pvalue') AS dm_pvalue_max,
        min(value) FILTER (WHERE metric = 'dm_pvalue') AS dm_pvalue_min,
        avg(value) FILTER (WHERE metric = 'dm_pinball_stat') AS dm_pinball_stat_mean,
        min(value) FILTER (WHERE metric = 'dm_pinball_pvalue') AS dm_pinball_pvalue_min,
        max(value) FILTER (WHERE metric = 'dm_pinball_pvalue') AS dm_pinball_pvalue_max
    FROM fold_metrics
    GROUP BY model, horizon
)
SELECT
    p.*,
    1 - p.pinball / z.pinball AS pinball_skill_vs_zero_return,
    1 - p.rmse / z.rmse AS rmse_skill_vs_zero_return,
    rank() OVER (PARTITION BY p.horizon ORDER BY p.pinball) AS pinball_rank
FROM per_model p
LEFT JOIN per_model z ON z.model = 'zero_return' AND z.horizon = p.horizon
ORDER BY p.horizon, p.pinball;
