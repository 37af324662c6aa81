"""Render the warehouse's results as Markdown, and write them into the docs between markers.

    python -m forecast_assets.report [--docs docs/] [--timings bench/results/demo_timings.json]

The sections `leaderboard` and `backtest-table` (docs/evaluation.md) are this command's output on
the demo warehouse ($FORECAST_WAREHOUSE, else warehouse/forecast.duckdb), and `demo-timings`
(docs/performance.md) is `make demo`'s timings file, when it exists; none is typed by hand.
Without --docs the sections are printed.
"""

import argparse
import json
from pathlib import Path

import polars as pl

from forecast_assets.doc_sections import add_docs_argument, write_sections
from warehouse import read_sql


def leaderboard_markdown(path=None) -> str:
    board = read_sql(
        "SELECT b.model, b.horizon, b.n_folds, b.pinball, b.pinball / e.pinball AS vs_ewma_vol, "
        "b.pinball_skill_vs_zero_return AS pinball_skill, b.folds_best, b.coverage_80, "
        "b.coverage_80_min, b.coverage_80_max, b.rmse / z.rmse AS rmse_vs_zero_return, "
        "b.directional_accuracy, b.dm_best_pinball_stat_mean AS dm_best_pinball_stat, "
        "b.dm_best_pinball_better_folds AS dm_best_better, b.dm_best_pinball_worse_folds AS dm_best_worse, "
        "b.dm_pinball_stat_mean AS dm_zero_pinball_stat, b.dm_pinball_better_folds AS dm_zero_better, "
        "b.dm_pinball_worse_folds AS dm_zero_worse, b.pinball_seed_std / b.pinball AS seed_cv, b.n_seeds "
        "FROM model_leaderboard b "
        "JOIN model_leaderboard e ON e.model = 'ewma_vol' AND e.horizon = b.horizon "
        "JOIN model_leaderboard z ON z.model = 'zero_return' AND z.horizon = b.horizon "
        "ORDER BY b.horizon, b.pinball",
        path=path,
    )
    runs = read_sql(
        "SELECT min(test_start) AS first, max(test_end) AS last, count(*) AS folds FROM folds", path=path
    ).row(0, named=True)
    scores = read_sql(
        "SELECT horizon, model, count(*) AS scored, avg(covered_80::INT) AS coverage_80, avg(pinball) AS pinball, "
        "avg(abs_pct_error) AS mape FROM forecast_scores GROUP BY horizon, model ORDER BY horizon, model",
        path=path,
    )
    return (
        f"Test slices of {runs['folds']} walk-forward folds, {runs['first']} to {runs['last']}. "
        "pinball: mean over folds; vs_ewma_vol: its ratio to ewma_vol's; pinball_skill = 1 - pinball / "
        "zero_return's; folds_best: folds on which the model had the lowest pinball of all; "
        "coverage_80: mean, min and max over folds; rmse_vs_zero_return: the point forecast's RMSE over "
        "zero_return's. Diebold-Mariano (HLN) tests of the LSTM on pinball loss, per fold: dm_best_* "
        "against the fold's best other model (lowest test pinball), dm_zero_* against zero_return; "
        "*_stat is the statistic averaged over folds (negative: the LSTM's loss is lower), *_better / "
        "*_worse count the folds with p < 0.05 each way. seed_cv: the standard deviation of the "
        "ensemble members' single-seed pinball over the mean pinball (seed noise), n_seeds members.\n\n"
        + _table(board)
        + "\n\nDaily forecasts of the demo (last sessions of the sample) that have matured:\n\n"
        + _table(scores)
    )


def _table(frame: pl.DataFrame) -> str:
    def fmt(v):
        return f"{v:.5g}" if isinstance(v, float) else ("" if v is None else str(v))

    head = "| " + " | ".join(frame.columns) + " |"
    sep = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = ["| " + " | ".join(fmt(v) for v in row) + " |" for row in frame.iter_rows()]
    return "\n".join([head, sep, *rows])


def backtest_markdown(path=None) -> str:
    """The `strategy_comparison` view as Markdown: every strategy's portfolio metrics over all
    folds' test slices, the Sharpe ratio fold by fold, and the published forecasts' period."""
    cols = (
        "strategy, role, round(cagr, 4) AS cagr, round(ann_volatility, 4) AS ann_vol, "
        "round(sharpe, 3) AS sharpe, round(sortino, 3) AS sortino, round(max_drawdown, 4) AS max_dd, "
        "max_drawdown_duration::INT AS max_dd_sessions, round(hit_rate, 4) AS hit_rate, "
        "round(profit_factor, 3) AS profit_factor, round(turnover, 2) AS turnover, "
        "round(exposure, 3) AS exposure, round(psr, 3) AS psr, round(dsr, 3) AS dsr, "
        "n_trials::INT AS n_trials"
    )
    overall = read_sql(f"SELECT {cols} FROM strategy_comparison WHERE period = 'all'", path=path)
    if overall.height == 0:
        raise SystemExit("strategy_comparison has no rows: materialize strategy_backtest first")
    span = read_sql(
        "SELECT min(date) AS first, max(date) AS last, count(DISTINCT date) AS sessions "
        "FROM backtest_returns WHERE period = 'all' AND ticker = 'portfolio'",
        path=path,
    ).row(0, named=True)
    per_fold = read_sql(
        "PIVOT (SELECT strategy, period, round(sharpe, 2) AS sharpe FROM strategy_comparison "
        "WHERE period LIKE 'fold_%') ON period USING first(sharpe) GROUP BY strategy ORDER BY strategy",
        path=path,
    )
    published = read_sql(
        f"SELECT {cols}, n_sessions::INT AS n_sessions FROM strategy_comparison WHERE period = 'published'",
        path=path,
    )
    text = (
        f"Equal-weight portfolio of the tickers, {span['sessions']} sessions of returns from "
        f"{span['first']} to {span['last']} (the folds' test slices, traded one session after each "
        "forecast), net of costs. Fractions, not percent; turnover is one-way a year in multiples "
        "of the capital; n_trials is the number of strategies the DSR deflates for.\n\n"
        + _table(overall)
        + "\n\nAnnualised Sharpe ratio per fold (one year of test sessions each):\n\n"
        + _table(per_fold)
    )
    if published.height:
        text += (
            f"\n\nThe published daily forecasts of the demo ({published['n_sessions'][0]} sessions "
            "with a known outcome: far too few to judge, shown for completeness):\n\n"
            + _table(published.drop("n_sessions"))
        )
    return text


TIMINGS_FILE = Path("bench/results/demo_timings.json")


def timings_markdown(path: Path = TIMINGS_FILE) -> str:
    """The demo's step timings (written by `forecast_assets.demo`) as a Markdown table."""
    record = json.loads(path.read_text())
    rows = "\n".join(f"| {step} | {seconds:.0f} |" for step, seconds in record["steps_s"].items())
    overlap = record.get("runs_at_once", 1) > 1
    total = "pipeline (wall; runs overlap)" if overlap else "total"
    return (
        f"`make demo` on {record['date']}: {record['cpus']} CPUs ({record['machine']}), JAX backend "
        f"`{record['jax_backend']}`, peak RSS {record['peak_rss_mb']} MB"
        + (f" ({record['peak_rss_scope']})" if record.get("peak_rss_scope") else "")
        + (
            f"; {record['runs_at_once']} runs at a time (the evaluation beside the models and forecasts), "
            "so the pipeline's wall time is less than the sum of the runs'"
            if overlap
            else ""
        )
        + f".\n\n| run | wall seconds |\n|---|---|\n{rows}\n| **{total}** | **{record['total_s']:.0f}** |"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_docs_argument(parser)
    parser.add_argument(
        "--timings",
        type=Path,
        default=TIMINGS_FILE,
        help=f"the demo's timings file (default {TIMINGS_FILE}, relative to the working directory; "
        "the demo-timings section is skipped when the default is absent)",
    )
    args = parser.parse_args(argv)
    if args.timings != TIMINGS_FILE and not args.timings.is_file():
        raise SystemExit(f"{args.timings} does not exist")
    sections = {"leaderboard": leaderboard_markdown(), "backtest-table": backtest_markdown()}
    if args.timings.is_file():
        sections["demo-timings"] = timings_markdown(args.timings)
    if args.docs:
        for page in write_sections(args.docs, sections):
            print(f"updated {page}")
    else:
        for body in sections.values():
            print(body + "\n")


if __name__ == "__main__":
    main()
