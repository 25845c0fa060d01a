"""benchmarks/quality.py: its argument checks, and one tiny run that writes a scored row."""

import json
import os
import subprocess
import sys

import pytest

from benchmarks import quality

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_sample_settings_are_parsed_and_typed():
  assert quality.parse_sample_setting("") == {}
  assert quality.parse_sample_setting("sampler=ddpm, steps=200,frame_stagger=0.95") == {
    "sampler": "ddpm",
    "steps": 200,
    "frame_stagger": 0.95,
  }
  with pytest.raises(quality.BenchmarkInputError, match="'bogus=1'"):
    quality.parse_sample_setting("bogus=1")
  with pytest.raises(quality.BenchmarkInputError, match="steps must be a int, got 'many'"):
    quality.parse_sample_setting("steps=many")


def test_unknown_config_variant_or_field_is_named():
  with pytest.raises(
    quality.BenchmarkInputError, match="Unknown config 'nope'.*bouncing_shapes_unet"
  ):
    quality.load_benchmark_config("nope", "default", [])
  with pytest.raises(quality.BenchmarkInputError, match="'huge'"):
    quality.load_benchmark_config("bouncing_shapes_unet", "huge", [])
  with pytest.raises(quality.BenchmarkInputError, match="'optim.nope=1'"):
    quality.load_benchmark_config("bouncing_shapes_unet", "default", ["optim.nope=1"])
  config = quality.load_benchmark_config(
    "bouncing_shapes_unet", "default", ["optim.learning_rate=1e-3"]
  )
  assert config.optim.learning_rate == 1e-3


def test_budget_too_short_to_train_a_step_is_refused():
  with pytest.raises(quality.BenchmarkInputError, match="--steps must be >= 1.*got 0"):
    quality.check_budget(0, None)
  with pytest.raises(quality.BenchmarkInputError, match="--minutes 0.2 is too short"):
    quality.check_budget(None, 0.2)
  quality.check_budget(1, 1.0)  # the smallest budgets allowed


@pytest.mark.e2e
def test_tiny_run_appends_one_scored_row_per_sampling(tmp_path):
  import jax  # pylint: disable=g-import-not-at-top

  env = dict(
    os.environ,
    JAX_PLATFORMS="cpu",
    JAX_COMPILATION_CACHE_DIR=jax.config.jax_compilation_cache_dir or "",
  )
  out = tmp_path / "quality.json"
  run = subprocess.run(
    [
      sys.executable,
      "-m",
      "benchmarks.quality",
      "--label",
      "tiny",
      "--variant",
      "tiny",
      "--steps",
      "2",
      "--num_samples",
      "2",
      "--workdir",
      str(tmp_path / "run"),
      "--sample",
      "steps=2",
      "--sample",
      "sampler=ddpm,steps=3,frame_stagger=0.5",
      "--out",
      str(out),
    ],
    cwd=REPO,
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
    check=False,
  )
  assert run.returncode == 0, run.stderr[-3000:]
  rows = [json.loads(line) for line in out.read_text().splitlines()]
  assert [row["sampling"]["sampler"] for row in rows] == ["ddim", "ddpm"]
  assert [row["sampling"]["steps"] for row in rows] == [2, 3]
  for row in rows:
    assert row["label"] == "tiny" and row["train_steps"] == 2 and row["train_seconds"] > 0
    assert 0 <= row["valid_fraction"] <= 1
    assert row["colour_change_rate"] == pytest.approx(1 - row["colour_ok_fraction"])
    assert 0 <= row["factor_distance"] <= 1 and "speed_distance" in row
