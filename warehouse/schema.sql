-- The warehouse contract (see README "Table contract"). Applied idempotently by warehouse.db.
-- `features` is the one table whose columns follow the configuration: it is (re)created by the
-- features asset in the same transaction that fills it.

CREATE TABLE IF NOT EXISTS schema_meta (
    key   VARCHAR PRIMARY KEY,
    value VARCHAR NOT NULL
);

CREATE TABLE IF NOT EXISTS raw_prices (
    ticker      VARCHAR NOT NULL,
    date        DATE NOT NULL,
    open        DOUBLE,
    high        DOUBLE,
    low         DOUBLE,
    close       DOUBLE,
    adj_close   DOUBLE,
    volume      DOUBLE,
    source      VARCHAR NOT NULL,
    ingested_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (ticker, date)
);
COMMENT ON TABLE raw_prices IS 'Daily prices per ticker and NYSE session, as delivered by the source (sample, yfinance or file).';
COMMENT ON COLUMN raw_prices.adj_close IS 'Split- and dividend-adjusted close; returns are computed on it (on close where it is null).';
COMMENT ON COLUMN raw_prices.volume IS 'Shares traded; null where the source has no volume (the embedded sample).';

-- Price vintages (schema version 2; the ALTERs upgrade a version-1 warehouse in place).
ALTER TABLE raw_prices ADD COLUMN IF NOT EXISTS vintage BIGINT DEFAULT 0;
COMMENT ON COLUMN raw_prices.vintage IS 'The price vintage (price_vintages.vintage) that stored this row''s values; 0: stored before vintages were recorded.';

CREATE TABLE IF NOT EXISTS price_vintages (
    vintage         BIGINT PRIMARY KEY,
    created_at      TIMESTAMPTZ NOT NULL,
    source          VARCHAR NOT NULL,
    content_sha256  VARCHAR NOT NULL,
    rows_inserted   BIGINT NOT NULL,
    rows_changed    BIGINT NOT NULL,
    rows_removed    BIGINT NOT NULL,
    first_date      DATE,
    last_date       DATE,
    tickers_changed VARCHAR[] NOT NULL
);
COMMENT ON TABLE price_vintages IS 'One row per ingest that changed stored prices: rows new to the warehouse (rows_inserted), rows whose values it rewrote (rows_changed, e.g. a split or dividend adjustment) or removed, the span of the rows it wrote, and the sha256 of those rows. The prices as a vintage stored them: FROM prices_as_of(vintage).';
COMMENT ON COLUMN price_vintages.tickers_changed IS 'Tickers whose already-stored values this vintage rewrote or removed (history rewritten), not those that only gained new sessions.';

CREATE TABLE IF NOT EXISTS raw_prices_replaced (
    ticker      VARCHAR NOT NULL,
    date        DATE NOT NULL,
    open        DOUBLE,
    high        DOUBLE,
    low         DOUBLE,
    close       DOUBLE,
    adj_close   DOUBLE,
    volume      DOUBLE,
    source      VARCHAR NOT NULL,
    ingested_at TIMESTAMPTZ NOT NULL,
    vintage     BIGINT NOT NULL,
    replaced_by BIGINT NOT NULL,
    PRIMARY KEY (ticker, date, vintage)
);
COMMENT ON TABLE raw_prices_replaced IS 'raw_prices rows a later vintage rewrote or removed: the values of vintage, valid until the vintage replaced_by. Together with raw_prices they give every vintage''s prices (prices_as_of).';

CREATE TABLE IF NOT EXISTS universe_membership (
    ticker        VARCHAR PRIMARY KEY,
    role          VARCHAR NOT NULL,
    first_session DATE,
    last_session  DATE
);
COMMENT ON TABLE universe_membership IS 'The configured universe as the latest raw_prices run saw it (universe.tickers and universe.exogenous, with universe.membership): a ticker is a member from first_session to last_session (null: open). No prices are expected and no forecast is made outside it; its past forecasts and scores stay.';

-- `targets` (ticker, date, horizon) has no PRIMARY KEY index: maintaining one over 50 million rows
-- cost a night 6 to 10 s to replace 60,000 rows (0.02 s without) and most of each checkpoint.
-- The writer keeps the key (warehouse.io.UNKEYED): no duplicate in what it inserts, nothing
-- inserted outside the slice it deleted.
CREATE TABLE IF NOT EXISTS targets (
    ticker  VARCHAR NOT NULL,
    date    DATE NOT NULL,
    horizon INTEGER NOT NULL,
    target  DOUBLE
);
COMMENT ON TABLE targets IS 'Forward log return log(price[t+h] / price[t]) per ticker, date and horizon (sessions); null until t+h is known. Labels only, never model inputs. Key (ticker, date, horizon), kept by the writer (no index).';

CREATE TABLE IF NOT EXISTS features_state (
    ticker         VARCHAR PRIMARY KEY,
    prices_vintage BIGINT NOT NULL,
    membership     VARCHAR NOT NULL,
    signature      VARCHAR NOT NULL
);
COMMENT ON TABLE features_state IS 'What the stored features and targets were built from, per configured ticker: the features asset recomputes only what changed since (new sessions, a new ticker, a rewritten history, another configuration).';
COMMENT ON COLUMN features_state.prices_vintage IS 'The price vintage (price_vintages.vintage) the ticker''s features were brought up to; price rows of a later vintage are recomputed.';
COMMENT ON COLUMN features_state.membership IS 'The ticker''s membership (first..last session, empty where open) when built; a change recomputes its whole history.';
COMMENT ON COLUMN features_state.signature IS 'Digest of the feature configuration, optional source columns and block layout; a change rebuilds every feature.';

CREATE TABLE IF NOT EXISTS folds (
    fold        INTEGER PRIMARY KEY,
    train_start DATE NOT NULL,
    train_end   DATE NOT NULL,
    val_start   DATE NOT NULL,
    val_end     DATE NOT NULL,
    test_start  DATE NOT NULL,
    test_end    DATE NOT NULL
);
COMMENT ON TABLE folds IS 'Walk-forward folds: expanding (or sliding) train, validation for early stopping, test; purge gaps of at least the longest horizon between slices.';

-- `fold_predictions` has no PRIMARY KEY index either (as `targets`): at 5,000 tickers the fold
-- evaluation writes about 88 million rows at once, and the index would have to fit in memory.
CREATE TABLE IF NOT EXISTS fold_predictions (
    fold       INTEGER NOT NULL,
    model      VARCHAR NOT NULL,
    ticker     VARCHAR NOT NULL,
    date       DATE NOT NULL,
    horizon    INTEGER NOT NULL,
    last_close DOUBLE NOT NULL,
    y_true     DOUBLE NOT NULL,
    y_pred     DOUBLE NOT NULL,
    q10        DOUBLE NOT NULL,
    q50        DOUBLE NOT NULL,
    q90        DOUBLE NOT NULL
);
COMMENT ON TABLE fold_predictions IS 'Out-of-sample predictions on each fold''s test slice, log-return space; y_pred is the point forecast (the median for quantile models). Key (fold, model, ticker, date, horizon), kept by the writer (no index).';

CREATE TABLE IF NOT EXISTS fold_metrics (
    fold    INTEGER NOT NULL,
    model   VARCHAR NOT NULL,
    horizon INTEGER NOT NULL,
    metric  VARCHAR NOT NULL,
    value   DOUBLE,
    PRIMARY KEY (fold, model, horizon, metric)
);
COMMENT ON TABLE fold_metrics IS 'Test-slice metrics per fold, model and horizon: mae, rmse, mape_price (%), directional_accuracy, pinball, coverage_80, and for the LSTM dm_stat / dm_pvalue (Diebold-Mariano with HLN correction against zero_return on squared error).';

CREATE TABLE IF NOT EXISTS models (
    model_version   VARCHAR PRIMARY KEY,
    period          VARCHAR NOT NULL,
    trained_at      TIMESTAMPTZ NOT NULL,
    train_start     DATE NOT NULL,
    train_end       DATE NOT NULL,
    config          JSON NOT NULL,
    metrics         JSON NOT NULL,
    code_version    VARCHAR NOT NULL,
    device          VARCHAR NOT NULL,
    artifact_sha256 VARCHAR NOT NULL,
    promoted        BOOLEAN NOT NULL,
    serving_model   VARCHAR NOT NULL,
    decision        VARCHAR NOT NULL
);
COMMENT ON TABLE models IS 'Production models, one per retrain period, with lineage. serving_model is lstm when the model passed the promotion gate, else the baseline that serves the period; decision says why.';
ALTER TABLE models ADD COLUMN IF NOT EXISTS prices_vintage BIGINT;
COMMENT ON COLUMN models.prices_vintage IS 'The price vintage the model was trained on (price_vintages.vintage; 0: prices stored before vintages were recorded).';

ALTER TABLE models ADD COLUMN IF NOT EXISTS baseline_state JSON;
COMMENT ON COLUMN models.baseline_state IS 'The fitted state of the period''s best baseline ({"model": name, "state": ...}) where it has one (ewma_vol, gjr_garch, vol_blend) and may serve (the gate refused the LSTM, or a configured ticker has no LSTM embedding); daily_forecasts restores it instead of refitting while the configuration and the stored prices are those it was fitted on. Null: refitted when it serves.';

CREATE TABLE IF NOT EXISTS model_artifacts (
    model_version VARCHAR PRIMARY KEY,
    artifact      BLOB NOT NULL
);
COMMENT ON TABLE model_artifacts IS 'Serialized model (Flax msgpack of parameters, scalers and config); sha256 in models.artifact_sha256.';

CREATE TABLE IF NOT EXISTS forecasts (
    as_of_date      DATE NOT NULL,
    ticker          VARCHAR NOT NULL,
    horizon         INTEGER NOT NULL,
    model_version   VARCHAR NOT NULL,
    model           VARCHAR NOT NULL,
    target_date     DATE NOT NULL,
    last_close      DOUBLE NOT NULL,
    pred_log_return DOUBLE NOT NULL,
    q10             DOUBLE NOT NULL,
    q50             DOUBLE NOT NULL,
    q90             DOUBLE NOT NULL,
    pred_close      DOUBLE NOT NULL,
    q10_close       DOUBLE NOT NULL,
    q50_close       DOUBLE NOT NULL,
    q90_close       DOUBLE NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (as_of_date, ticker, horizon, model_version)
);
COMMENT ON TABLE forecasts IS 'Daily forecasts made after the close of as_of_date for target_date = as_of_date + horizon sessions. q10/q50/q90 are log returns; *_close are last_close * exp(q). model is lstm, or the baseline serving when the gate refused the LSTM.';
ALTER TABLE forecasts ADD COLUMN IF NOT EXISTS prices_vintage BIGINT;
COMMENT ON COLUMN forecasts.prices_vintage IS 'The price vintage the forecast was computed from: FROM prices_as_of(prices_vintage) gives the prices it saw (the forecasts_reproducible check recomputes it from them).';

CREATE TABLE IF NOT EXISTS forecast_state (
    model_version        VARCHAR NOT NULL,
    ticker               VARCHAR NOT NULL,
    model                VARCHAR NOT NULL,
    as_of                DATE NOT NULL,
    s2                   DOUBLE NOT NULL,
    next_variance        DOUBLE,
    sigma                DOUBLE,
    slow_variance        DOUBLE,
    market_variance      DOUBLE,
    market_slow_variance DOUBLE,
    PRIMARY KEY (model_version, ticker)
);
COMMENT ON TABLE forecast_state IS 'Where the serving model''s recursions stood after each ticker''s row as_of (5 rows before its newest forecast, plus the LSTM''s lookback), per model version: daily_forecasts continues from it, reading only the rows after as_of, and writes the next one with the forecasts. A features write that changes a row at or before as_of deletes it (that ticker is then forecast from its whole history once).';
COMMENT ON COLUMN forecast_state.model IS 'The forecaster that served the ticker (lstm, or the volatility baseline ewma_vol, gjr_garch or vol_blend); the LSTM''s rows also hold its inputs'' recursions (sigma .. market_slow_variance).';
COMMENT ON COLUMN forecast_state.s2 IS 'RiskMetrics variance of the daily log return after as_of (the prior''s EWMA).';
COMMENT ON COLUMN forecast_state.next_variance IS 'GJR-GARCH forecast of the next return''s variance after as_of; null where the prior has no GJR fit for the ticker.';
COMMENT ON COLUMN forecast_state.sigma IS 'The prior''s one-session scale at as_of (what the next row''s shock divides by).';
COMMENT ON COLUMN forecast_state.slow_variance IS 'Slow EWMA (half-life 126 sessions) of sigma^2 at as_of (vol_ratio).';
COMMENT ON COLUMN forecast_state.market_variance IS 'The market index''s RiskMetrics variance at as_of; null where the model reads no market input.';
COMMENT ON COLUMN forecast_state.market_slow_variance IS 'Slow EWMA of market_variance at as_of (mkt_vol_ratio).';

CREATE TABLE IF NOT EXISTS forecast_scores (
    as_of_date        DATE NOT NULL,
    ticker            VARCHAR NOT NULL,
    horizon           INTEGER NOT NULL,
    model_version     VARCHAR NOT NULL,
    model             VARCHAR NOT NULL,
    target_date       DATE NOT NULL,
    actual_close      DOUBLE NOT NULL,
    actual_log_return DOUBLE NOT NULL,
    error             DOUBLE NOT NULL,
    abs_pct_error     DOUBLE NOT NULL,
    covered_80        BOOLEAN NOT NULL,
    pinball           DOUBLE NOT NULL,
    scored_at         TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (as_of_date, ticker, horizon, model_version)
);
COMMENT ON TABLE forecast_scores IS 'Forecasts whose target date has passed: error = pred_close - actual_close, covered_80 = actual inside [q10_close, q90_close], pinball = mean quantile loss in log-return space.';

CREATE TABLE IF NOT EXISTS forecast_scores_state (
    prices_vintage       BIGINT NOT NULL,
    forecasts_created_at TIMESTAMPTZ
);
COMMENT ON TABLE forecast_scores_state IS 'What forecast_scores was last brought up to (one row): every forecast created up to forecasts_created_at scored against the prices of vintage prices_vintage. The next run rescores only what changed since (warehouse.scores); without a row it rebuilds in full.';

-- `backtest_returns` has no PRIMARY KEY index either: at 5,000 tickers the backtest writes about
-- 100 million rows at once.
CREATE TABLE IF NOT EXISTS backtest_returns (
    strategy     VARCHAR NOT NULL,
    ticker       VARCHAR NOT NULL,
    date         DATE NOT NULL,
    period       VARCHAR NOT NULL,
    position     DOUBLE NOT NULL,
    turnover     DOUBLE NOT NULL,
    gross_return DOUBLE NOT NULL,
    cost         DOUBLE NOT NULL,
    net_return   DOUBLE NOT NULL
);
COMMENT ON TABLE backtest_returns IS 'Key (strategy, ticker, date, period), kept by the writer (no index). Daily returns of the strategy backtest (forecast_core/backtest.py). strategy: a model (rules on its horizon-1 fold forecasts), published (the daily forecasts) or buy_and_hold. The forecast made at the close of t sets the position at the close of t+1, held over the return to the close of date = t+2. period: fold_<k>, all or published; ticker portfolio = equal weight across tickers.';
COMMENT ON COLUMN backtest_returns.position IS 'Fraction of the ticker''s capital held long over the session ending on date (0 = flat, at most backtest.max_position).';
COMMENT ON COLUMN backtest_returns.turnover IS '|position - previous position|, traded at the close of the previous session (each strategy, ticker and period starts flat).';
COMMENT ON COLUMN backtest_returns.gross_return IS 'position * simple return of the ticker from the previous close to the close of date.';
COMMENT ON COLUMN backtest_returns.cost IS '(backtest.cost_bps + backtest.slippage_bps) / 10000 * turnover.';
COMMENT ON COLUMN backtest_returns.net_return IS 'gross_return - cost (simple return of the capital).';

CREATE TABLE IF NOT EXISTS backtest_metrics (
    strategy VARCHAR NOT NULL,
    ticker   VARCHAR NOT NULL,
    period   VARCHAR NOT NULL,
    metric   VARCHAR NOT NULL,
    value    DOUBLE,
    PRIMARY KEY (strategy, ticker, period, metric)
);
COMMENT ON TABLE backtest_metrics IS 'Risk and performance of each strategy per ticker (and portfolio) and period, on net returns: n_sessions, total_return, cagr, ann_volatility, sharpe, sortino (annualised, risk-free 0), max_drawdown, max_drawdown_duration (sessions under water), hit_rate, profit_factor, turnover (one-way, a year), exposure, psr (P[true Sharpe > 0]), dsr (deflated Sharpe ratio over n_trials strategies). Null where undefined (a strategy that never trades has no Sharpe ratio).';

CREATE TABLE IF NOT EXISTS forecast_explanations (
    as_of_date      DATE NOT NULL,
    ticker          VARCHAR NOT NULL,
    horizon         INTEGER NOT NULL,
    model_version   VARCHAR NOT NULL,
    feature         VARCHAR NOT NULL,
    attribution     DOUBLE NOT NULL,
    rank            INTEGER NOT NULL,
    median          DOUBLE NOT NULL,
    baseline_median DOUBLE NOT NULL,
    PRIMARY KEY (as_of_date, ticker, horizon, model_version, feature)
);
COMMENT ON TABLE forecast_explanations IS 'Integrated-gradient attributions of the LSTM''s median forecast (log return) made after the close of as_of_date to each input feature, summed over its lookback window; baseline: every feature at the ticker''s training mean. Per forecast they sum to median - baseline_median. The full (feature, lag) grid of one forecast is recomputed on demand: python -m forecast_assets.explain DATE TICKER. Where the gate refused the month''s LSTM (forecasts.model is a baseline), they explain the LSTM, not the forecast published.';
COMMENT ON COLUMN forecast_explanations.attribution IS 'The feature''s attribution summed over every lag of the window (log return)';
COMMENT ON COLUMN forecast_explanations.rank IS 'Rank of |attribution| among the forecast''s features (1: the largest)';
COMMENT ON COLUMN forecast_explanations.median IS 'The LSTM''s median forecast of the log return for this window';
COMMENT ON COLUMN forecast_explanations.baseline_median IS 'The median forecast for the baseline window (every input at its training mean)';

CREATE TABLE IF NOT EXISTS forecast_explanation_lags (
    as_of_date    DATE NOT NULL,
    ticker        VARCHAR NOT NULL,
    horizon       INTEGER NOT NULL,
    model_version VARCHAR NOT NULL,
    lag           INTEGER NOT NULL,
    attribution   DOUBLE NOT NULL,
    PRIMARY KEY (as_of_date, ticker, horizon, model_version, lag)
);
COMMENT ON TABLE forecast_explanation_lags IS 'The same attributions as forecast_explanations summed over the input features instead, per lag (sessions before as_of_date; 0 is as_of_date itself): how far back the window moved the forecast. Per forecast they sum to median - baseline_median of forecast_explanations.';
COMMENT ON COLUMN forecast_explanation_lags.lag IS 'Sessions before as_of_date (0: the as-of session)';
COMMENT ON COLUMN forecast_explanation_lags.attribution IS 'Attribution of the window step at this lag, summed over the inputs (log return)';
