"""The promotion gate serves the model with the lowest validation pinball, and says so."""

from forecast_core.serving.periods import _PreviousComparison, gate

SCORES = {"lstm": 0.00820, "zero_return": 0.00850, "ewma_vol": 0.00818, "gjr_garch": 0.00819}


def test_a_baseline_with_lower_validation_pinball_serves_instead_of_the_lstm():
    serving, promoted, decision = gate(SCORES, None, 0.0)
    assert (serving, promoted) == ("ewma_vol", False)
    assert decision.startswith("serving ewma_vol: ewma_vol has the lower validation pinball")
    # every score is in the text, best first, and the rule with its tolerance
    assert "(ewma_vol 0.00818, gjr_garch 0.00819, lstm 0.0082, zero_return 0.0085)" in decision
    assert (
        "the LSTM serves if at most 0.00818 x (1 + 0) = 0.00818, ewma_vol being the best baseline" in decision
    )


def test_a_tolerance_lets_the_lstm_serve_within_it_and_the_text_says_so():
    serving, promoted, decision = gate(SCORES, None, 0.01)
    assert (serving, promoted) == ("lstm", True)
    assert "the LSTM serves if at most 0.00818 x (1 + 0.01) = 0.0082618" in decision


def test_the_lstm_serves_when_lowest_and_within_reach_of_the_previous_model():
    scores = {**SCORES, "lstm": 0.00810}
    against = _PreviousComparison(lstm=0.00810, previous=0.00805, where="")
    serving, promoted, decision = gate(scores, against, 0.0, 0.01)
    assert (serving, promoted) == ("lstm", True)
    assert decision.startswith("serving lstm: validation pinball lstm 0.0081, ewma_vol 0.00818")
    assert (
        "the LSTM's 0.0081 is within 1% of the previous model's 0.00805 (refused beyond 0.0081305)"
        in decision
    )


def test_the_lstm_is_refused_when_worse_than_the_previous_model_beyond_tolerance():
    scores = {**SCORES, "lstm": 0.00810}
    against = _PreviousComparison(lstm=0.00810, previous=0.00790, where=" on the tickers both models know")
    serving, promoted, decision = gate(scores, against, 0.0, 0.01)
    # the best baseline serves, never a model the validation ranks below it
    assert (serving, promoted) == ("ewma_vol", False)
    assert "refused against the previous model" in decision
    assert "more than 1% worse than the previous model's 0.0079 on the tickers both models know" in decision
