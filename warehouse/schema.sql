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

CREATE TABLE IF NOT EXISTS targets (
    ticker  VARCHAR NOT NULL,
    date    DATE NOT NULL,
    horizon INTEGER NOT NULL,
    target  DOUBLE,
    PRIMARY KEY (ticker, date, horizon)
);
COMMENT ON TABLE targets IS 'Forward log return log(price[t+h] / price[t]) per ticker, date and horizon (sessions); null until t+h is known. Labels only, never model inputs.';

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
    q90        DOUBLE NOT NULL,
    PRIMARY KEY (fold, model, ticker, date, horizon)
);
COMMENT ON TABLE fold_predictions IS 'Out-of-sample predictions on each fold''s test slice, log-return space; y_pred is the point forecast (the median for quantile models).';

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
