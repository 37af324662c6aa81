"""Pure data and ML code for the forecasting job (no Dagster imports)."""
