"""The one configuration: defaults, TOML overrides, and errors that name the setting."""

import pytest

from forecast_core.config import QUANTILES, ForecastConfig, config_from_dict, load_config
from forecast_core.errors import ConfigError


def test_defaults_are_valid_and_the_quantiles_are_fixed():
    cfg = ForecastConfig()
    assert cfg.quantiles == QUANTILES == (0.1, 0.5, 0.9) and cfg.median_index == 1
    assert cfg.model.sigma_prior == "blend" and cfg.promotion_tolerance == 0.0
    assert "quantiles" not in cfg.to_dict()  # stored configs carry settings only


def test_a_toml_file_overrides_nested_sections(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('horizons = [1, 10]\n[model]\nsigma_prior = "gjr"\nensemble_size = 3\n')
    cfg = load_config(path)
    assert cfg.horizons == (1, 10) and cfg.max_horizon == 10
    assert (cfg.model.sigma_prior, cfg.model.ensemble_size) == ("gjr", 3)
    assert cfg.model.lookback == ForecastConfig().model.lookback  # untouched settings keep defaults


@pytest.mark.parametrize(
    "values, message",
    [
        ({"quantiles": [0.1, 0.5, 0.9]}, "setting quantiles is not configurable"),
        ({"model": {"sigma_prior": "garch"}}, "model.sigma_prior = 'garch'"),
        ({"model": {"ensemble_size": 0}}, "model.ensemble_size"),
        ({"previous_model_tolerance": -0.1}, "previous_model_tolerance = -0.1"),
        ({"model": {"lookbak": 10}}, "unknown setting model.'lookbak'"),
        ({"model": 3}, "setting model must be a table"),
    ],
)
def test_bad_settings_are_refused_by_name(values, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        config_from_dict(values)


def test_a_missing_or_broken_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "absent.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("horizons = [1,\n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_config(broken)
