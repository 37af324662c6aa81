"""Walk-forward folds: chronological train / validation / test slices with purge gaps.

One fold on the session axis (expanding window; `o` train, `-` purge gap, `v` validation,
`x` test, `.` unused)::

    fold 0  | o o o o o o - - v v - - x x x . . . . . . . . . |
    fold 1  | o o o o o o o o o o o - - v v - - x x x . . . . |
    fold 2  | o o o o o o o o o o o o o o o o - - v v - - x x x |

Test slices tile the end of the history without overlapping. The purge gap between slices is at
least the longest horizon, so that the label of every training row (its forward return over h
sessions) is realised before validation starts, and the same for validation before test. With the
sliding window the train slice keeps a fixed length instead of starting at the first session.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass

import polars as pl

from forecast_core.columns import FOLD
from forecast_core.config import FoldConfig
from forecast_core.errors import InsufficientDataError


@dataclass(frozen=True)
class Fold:
    fold: int
    train_start: dt.date
    train_end: dt.date
    val_start: dt.date
    val_end: dt.date
    test_start: dt.date
    test_end: dt.date

    @property
    def val(self) -> tuple[dt.date, dt.date]:
        return (self.val_start, self.val_end)


def walk_forward_folds(sessions: list[dt.date], cfg: FoldConfig, purge: int) -> list[Fold]:
    """Folds over the sorted unique `sessions` that have features and every target.

    Raises `InsufficientDataError` naming the settings when the history is too short for
    `n_folds` test slices plus validation, purge gaps and `min_train_sessions` of training.
    """
    days = sorted(set(sessions))
    n = len(days)
    k, test, val = cfg.n_folds, cfg.test_sessions, cfg.val_sessions
    first_test = n - k * test
    # Index of the first validation session of fold 0, and of its last training session.
    first_val = first_test - purge - val
    first_train_end = first_val - purge - 1
    if first_train_end + 1 < cfg.min_train_sessions:
        raise InsufficientDataError(
            f"{n} usable sessions ({days[0] if days else None}..{days[-1] if days else None}) "
            f"are too few for folds.n_folds={k} x folds.test_sessions={test}, "
            f"folds.val_sessions={val}, purge={purge} and folds.min_train_sessions="
            f"{cfg.min_train_sessions}"
        )
    folds = []
    for i in range(k):
        test_start = first_test + i * test
        train_start, train_end, val_start, val_end = train_and_validation(
            days, test_start - purge - 1, cfg, purge
        )
        folds.append(
            Fold(
                fold=i,
                train_start=train_start,
                train_end=train_end,
                val_start=val_start,
                val_end=val_end,
                test_start=days[test_start],
                test_end=days[test_start + test - 1],
            )
        )
    return folds


def train_and_validation(
    days: list[dt.date], val_end: int, cfg: FoldConfig, purge: int
) -> tuple[dt.date, dt.date, dt.date, dt.date]:
    """(train_start, train_end, val_start, val_end) ending with the validation slice at index
    `val_end` of the sorted sessions `days`: `cfg.val_sessions` of validation, a purge gap of
    `purge` sessions before it, and the training slice (expanding from the first session, or the
    last `cfg.train_sessions` with the sliding window). The one layout of folds and period models."""
    val_start = val_end - cfg.val_sessions + 1
    train_end = val_start - purge - 1
    train_start = 0 if cfg.window == "expanding" else max(0, train_end + 1 - cfg.train_sessions)
    return days[train_start], days[train_end], days[val_start], days[val_end]


def folds_frame(folds: list[Fold]) -> pl.DataFrame:
    """The `folds` table: one row per fold."""
    return pl.DataFrame([asdict(f) for f in folds]).with_columns(pl.col(FOLD).cast(pl.Int32))


def folds_from_frame(frame: pl.DataFrame) -> list[Fold]:
    return [Fold(**row) for row in frame.sort(FOLD).iter_rows(named=True)]
