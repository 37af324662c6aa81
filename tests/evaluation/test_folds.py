"""Walk-forward folds on a session list: tiling, purge gaps, label horizons, windows, errors."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from forecast_core.config import FoldConfig, config_from_dict
from forecast_core.data import calendar
from forecast_core.errors import ConfigError, InsufficientDataError
from forecast_core.evaluation.folds import Fold, folds_frame, folds_from_frame, walk_forward_folds

LONG = calendar.sessions(dt.date(2002, 1, 2), dt.date(2014, 12, 31))  # 3272 sessions
SESSIONS = LONG[-1258:]  # 2010-2014
SMALL = FoldConfig(n_folds=3, test_sessions=100, val_sessions=50, min_train_sessions=200,
                   train_sessions=300)  # fmt: skip


def index(day: dt.date) -> int:
    """Position of a session on the calendar (differences count sessions)."""
    return LONG.index(day)


def test_default_layout_with_config_defaults():
    cfg = config_from_dict({})
    shuffled = LONG[::-1] + LONG[::2]  # order and duplicates do not matter
    folds = walk_forward_folds(shuffled, cfg.folds, cfg.purge_sessions)
    assert [f.fold for f in folds] == list(range(cfg.folds.n_folds))
    assert folds[-1].test_end == LONG[-1]
    for f in folds:
        assert index(f.test_end) - index(f.test_start) + 1 == cfg.folds.test_sessions
        assert index(f.val_end) - index(f.val_start) + 1 == cfg.folds.val_sessions
        assert f.train_start == LONG[0]


@pytest.mark.parametrize("purge", [5, 7])
def test_test_slices_tile_the_end_without_overlap(purge):
    folds = walk_forward_folds(SESSIONS, SMALL, purge)
    assert len(folds) == SMALL.n_folds
    covered = []
    for f in folds:
        covered += LONG[index(f.test_start) : index(f.test_end) + 1]
    # Contiguous, non-overlapping, in fold order, ending on the last session.
    assert covered == SESSIONS[-SMALL.n_folds * SMALL.test_sessions :]
    for a, b in zip(folds, folds[1:]):
        assert index(b.test_start) == index(a.test_end) + 1


@pytest.mark.parametrize("horizons", [(1,), (1, 5), (1, 5, 21)])
def test_purge_gaps_cover_the_longest_horizon(horizons):
    cfg = config_from_dict({"horizons": list(horizons)})
    h = cfg.max_horizon
    folds = walk_forward_folds(SESSIONS, SMALL, cfg.purge_sessions)
    for f in folds:
        gap_train_val = index(f.val_start) - index(f.train_end) - 1
        gap_val_test = index(f.test_start) - index(f.val_end) - 1
        assert gap_train_val >= h and gap_val_test >= h
        # The label of the last training row (h sessions ahead) is realised before validation
        # starts; that of the last validation row before the test slice starts.
        assert index(f.train_end) + h < index(f.val_start)
        assert index(f.val_end) + h < index(f.test_start)
        assert index(f.train_end) + h < index(f.test_start)
        assert f.train_start <= f.train_end < f.val_start <= f.val_end < f.test_start <= f.test_end


def test_explicit_purge_longer_than_horizon():
    cfg = config_from_dict({"horizons": [1, 5], "folds": {"purge_sessions": 12}})
    assert cfg.purge_sessions == 12
    for f in walk_forward_folds(SESSIONS, SMALL, cfg.purge_sessions):
        assert index(f.val_start) - index(f.train_end) - 1 == 12
        assert index(f.test_start) - index(f.val_end) - 1 == 12


def test_expanding_versus_sliding_train_start():
    expanding = walk_forward_folds(SESSIONS, SMALL, 5)
    sliding = walk_forward_folds(SESSIONS, dataclasses.replace(SMALL, window="sliding"), 5)
    for e, s in zip(expanding, sliding):
        assert e.train_start == SESSIONS[0]
        assert index(s.train_end) - index(s.train_start) + 1 == SMALL.train_sessions
        # Only the train start differs.
        assert dataclasses.replace(s, train_start=e.train_start) == e
    starts = [index(f.train_start) for f in sliding]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)


def test_sliding_window_shorter_than_min_train_is_a_config_error():
    with pytest.raises(ConfigError, match=r"folds.train_sessions = 150.*min_train_sessions \(200\)"):
        config_from_dict({"folds": {"window": "sliding", "train_sessions": 150,
                                    "min_train_sessions": 200}})  # fmt: skip
    # The expanding window ignores train_sessions.
    config_from_dict({"folds": {"train_sessions": 150, "min_train_sessions": 200}})


def test_sliding_window_clipped_at_the_first_session():
    cfg = dataclasses.replace(SMALL, window="sliding", train_sessions=10_000)
    assert all(f.train_start == SESSIONS[0] for f in walk_forward_folds(SESSIONS, cfg, 5))


def test_just_enough_history_and_one_session_short():
    needed = SMALL.n_folds * SMALL.test_sessions + 2 * 5 + SMALL.val_sessions + SMALL.min_train_sessions
    folds = walk_forward_folds(SESSIONS[-needed:], SMALL, 5)
    assert index(folds[0].train_end) - index(folds[0].train_start) + 1 == SMALL.min_train_sessions
    with pytest.raises(InsufficientDataError) as err:
        walk_forward_folds(SESSIONS[-(needed - 1) :], SMALL, 5)
    message = str(err.value)
    for setting in ("folds.n_folds=3", "folds.test_sessions=100", "folds.val_sessions=50",
                    "purge=5", "folds.min_train_sessions=200", f"{needed - 1} usable sessions"):  # fmt: skip
        assert setting in message


def test_no_sessions_raises():
    with pytest.raises(InsufficientDataError, match="0 usable sessions"):
        walk_forward_folds([], SMALL, 5)


def test_folds_frame_round_trip():
    folds = walk_forward_folds(SESSIONS, SMALL, 5)
    frame = folds_frame(folds)
    assert frame.height == len(folds)
    assert frame.columns == [f.name for f in dataclasses.fields(Fold)]
    assert frame["fold"].dtype.is_integer()
    back = folds_from_frame(frame.reverse())  # order restored by fold
    assert back == folds
    assert all(isinstance(f.test_start, dt.date) and isinstance(f.fold, int) for f in back)
