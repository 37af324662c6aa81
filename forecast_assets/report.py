"""Render the warehouse's results as Markdown, and write them into the README between markers.

    python -m forecast_assets.report [--readme README.md]

The README's leaderboard is this command's output on the demo warehouse, never typed by hand.
"""

import argparse
import re
from pathlib import Path

import polars as pl

from warehouse import read_sql

START, END = "<!-- leaderboard:start -->", "<!-- leaderboard:end -->"


def leaderboard_markdown(path=None) -> str:
    board = read_sql(
        "SELECT model, horizon, n_folds, pinball, pinball_skill_vs_zero_return AS pinball_skill, "
        "coverage_80, rmse, mae, mape_price, directional_accuracy, dm_pvalue_min, dm_pvalue_max, "
        "dm_pinball_stat_mean AS dm_pinball_stat, dm_pinball_pvalue_min, dm_pinball_pvalue_max "
        "FROM model_leaderboard ORDER BY horizon, pinball",
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
        f"Test slices of {runs['folds']} walk-forward folds, {runs['first']} to {runs['last']}; "
        "pinball_skill = 1 - pinball / zero_return's pinball (higher is better); dm_pvalue: "
        "Diebold-Mariano (HLN) p-values of the LSTM against zero_return on squared error, min and max "
        "over folds; dm_pinball_*: the same test on pinball loss (statistic averaged over folds; "
        "negative means the LSTM's loss is lower).\n\n"
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


def update_readme(readme: Path, body: str) -> None:
    text = readme.read_text()
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.DOTALL)
    if not pattern.search(text):
        raise SystemExit(f"{readme} has no {START} ... {END} section")
    readme.write_text(pattern.sub(lambda _: f"{START}\n{body}\n{END}", text))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readme", type=Path, help="write into this README instead of printing")
    args = parser.parse_args()
    body = leaderboard_markdown()
    if args.readme:
        update_readme(args.readme, body)
    else:
        print(body)


if __name__ == "__main__":
    main()
