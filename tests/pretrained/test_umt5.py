"""jvdm's UMT5 encoder against transformers' `UMT5EncoderModel` on the shipped tiny checkpoint
(scripts/make_pretrained_references.py), and the loader's errors."""

import json
import pathlib
import shutil

import jax
import numpy as np
import pytest

from jvdm.errors import CheckpointError, ConfigError
from jvdm.models.umt5 import relative_position_buckets
from jvdm.pretrained.umt5 import load_umt5

FIXTURE = (
  pathlib.Path(__file__).resolve().parent.parent
  / "fixtures"
  / "pretrained"
  / "wan_t2v_tiny"
  / "text_encoder"
)


def test_the_encoder_equals_transformers():
  model, params = load_umt5(FIXTURE)
  reference = np.load(FIXTURE / "io.npz")
  hidden = jax.jit(model.apply)({"params": params}, reference["ids"], reference["mask"])
  expected = reference["hidden"]
  error = np.abs(np.asarray(hidden) - expected).max() / np.abs(expected).max()
  assert error <= 1e-4, error  # every position, the padded ones too


def test_buckets_of_t5():
  """Exact offsets below 8 (a quarter of 32 buckets), keys after the query in the upper half,
  logarithmic beyond, and everything past max_distance in the last bucket of its half."""
  buckets = np.asarray(relative_position_buckets(1, 300, 32, 128))[0]
  np.testing.assert_array_equal(buckets[:8], [0, 17, 18, 19, 20, 21, 22, 23])  # offset 0: 0
  assert buckets[200] == buckets[299] == 31
  before = np.asarray(relative_position_buckets(300, 1, 32, 128))[:, 0]
  assert before[1] == 1 and before[299] == 15
  assert np.all(np.diff(buckets[1:]) >= 0)


def test_bad_folders(tmp_path):
  with pytest.raises(CheckpointError, match="has no config.json"):
    load_umt5(tmp_path)
  folder = tmp_path / "encoder"
  shutil.copytree(FIXTURE, folder)
  (folder / "model.safetensors").unlink()
  with pytest.raises(CheckpointError, match="holds no weights"):
    load_umt5(folder)
  shutil.copy(FIXTURE / "model.safetensors", folder / "model.safetensors")
  config = json.loads((folder / "config.json").read_text())
  (folder / "config.json").write_text(json.dumps({**config, "model_type": "bert"}))
  with pytest.raises(ConfigError, match="describes a 'bert' model"):
    load_umt5(folder)
  (folder / "config.json").write_text(json.dumps({**config, "num_layers": 3}))
  missing = r"lacks 10 of the model's params .*'layer_2/attention_norm/scale'"  # a 3rd layer
  with pytest.raises(CheckpointError, match=missing):
    load_umt5(folder)
