"""Every field of every shipped config has a rule, and the rules describe what they allow."""

import importlib
import pkgutil

import pytest

import configs
from jvdm.config_rules import RULES, check_fields, integer, number
from jvdm.config_validation import validate_config
from jvdm.errors import ConfigError

SHIPPED = [
  (module.name, variant)
  for module in pkgutil.iter_modules(configs.__path__)
  for variant in importlib.import_module(f"configs.{module.name}").VARIANTS
]


def test_every_config_module_is_listed():
  assert {name for name, _ in SHIPPED} == {
    "bouncing_shapes_unet",
    "bouncing_shapes_dit",
    "bouncing_shapes_vae",
    "bouncing_shapes_latent",
  }


@pytest.mark.parametrize("name, variant", SHIPPED)
def test_every_shipped_config_passes_its_rules(name, variant):
  check_fields(importlib.import_module(f"configs.{name}").get_config(variant))


def test_a_field_without_a_rule_is_an_error(monkeypatch):
  config = importlib.import_module("configs.bouncing_shapes_unet").get_config("tiny")
  monkeypatch.delitem(RULES, "sample.fps")
  with pytest.raises(ConfigError, match="config.sample.fps is not a field jvdm knows"):
    check_fields(config)


@pytest.mark.parametrize(
  "rule, good, bad, description",
  [
    (integer(1), [1, 7], [0, 1.0, True, "1"], "an integer >= 1"),
    (number(0, 1), [0, 0.5, 1, 1.0], [-0.1, 1.5, float("nan"), "0.5"], "a number in [0, 1]"),
    (number(0, 1, high_open=True), [0.0, 0.99], [1.0], "a number in [0, 1)"),
    (number(0, low_open=True), [1e-9, 3], [0, -1], "a number > 0"),
  ],
)
def test_number_rules(rule, good, bad, description):
  assert all(rule.problem(value) is None for value in good)
  assert all(rule.problem(value) is not None for value in bad)
  assert rule.describe() == description


@pytest.mark.parametrize(
  "overrides",
  [
    {  # README: rectified flow with SD3's logit-normal times, flow-matching Euler
      "diffusion.process": "flow",
      "diffusion.prediction": "flow",
      "diffusion.time_sampling": "logit_normal",
      "sample.sampler": "flow_euler",
      "sample.spacing": "flow",
      "sample.frame_stagger": 0.0,
      "sample.time_power": 1.0,
    },
    {  # README: EDM, Heun on Karras sigmas
      "diffusion.process": "edm",
      "diffusion.prediction": "edm",
      "sample.sampler": "heun",
      "sample.spacing": "karras",
      "sample.frame_stagger": 0.0,
      "sample.time_power": 1.0,
    },
    {  # Wan 2.1's sampling: UniPC on shifted flow sigmas
      "diffusion.process": "flow",
      "diffusion.prediction": "flow",
      "diffusion.flow.shift": 3.0,
      "sample.sampler": "unipc",
      "sample.spacing": "flow",
      "sample.frame_stagger": 0.0,
      "sample.time_power": 1.0,
    },
  ],
)
def test_the_documented_recipes_pass_validation(overrides):
  """The README's command lines (the default's time_power=2 warps only the uniform spacing)."""
  config = importlib.import_module("configs.bouncing_shapes_unet").get_config("default")
  config.update_from_flattened_dict(overrides)
  validate_config(config)
