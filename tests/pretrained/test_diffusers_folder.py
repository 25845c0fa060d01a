"""The shipped tiny diffusers-format folder in Wan 2.1's layout (its scheduler config is Wan
2.1-T2V-1.3B's): the index, the prompt encoder and the scheduler read from it, and what a bad
folder says."""

import json
import pathlib
import shutil

import numpy as np
import pytest

from jvdm.errors import CheckpointError, ConfigError
from jvdm.pretrained.diffusers_folder import (
  check_component,
  load_prompt_encoder,
  read_model_index,
  scheduler_settings,
)

FIXTURES = pathlib.Path(__file__).resolve().parent.parent / "fixtures" / "pretrained"


@pytest.fixture(name="folder")
def fixture_folder(tmp_path):
  folder = tmp_path / "wan_tiny"
  shutil.copytree(FIXTURES / "wan_t2v_tiny", folder)
  return folder


def test_the_index_and_the_components_jvdm_builds(folder):
  assert read_model_index(folder)["transformer"] == ("diffusers", "WanTransformer3DModel")
  reference = np.load(FIXTURES / "wan_t2v_tiny" / "tokenizer" / "prompts.npz")
  embeds = load_prompt_encoder(folder, max_length=12)([str(p) for p in reference["prompts"]])
  expected = reference["embeds"]
  assert np.abs(np.asarray(embeds) - expected).max() <= 1e-4 * np.abs(expected).max()
  settings = scheduler_settings(folder)
  assert (settings.sampler, settings.spacing, settings.prediction) == ("unipc", "flow", "flow")
  assert settings.process.shift == 3.0


def test_a_bad_folder_is_named(folder, tmp_path):
  with pytest.raises(CheckpointError, match="not a diffusers-format model folder"):
    read_model_index(tmp_path / "elsewhere")
  index = json.loads((folder / "model_index.json").read_text())
  index["transformer"] = ["diffusers", "CogVideoXTransformer3DModel"]
  (folder / "model_index.json").write_text(json.dumps(index))
  with pytest.raises(ConfigError, match="'transformer' of .* is a CogVideoXTransformer3DModel"):
    check_component(folder, "transformer")
  scheduler = folder / "scheduler" / "scheduler_config.json"
  config = dict(json.loads(scheduler.read_text()), use_flow_sigmas=False)
  (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(config))
  with pytest.raises(ConfigError, match="use_flow_sigmas=False"):
    scheduler_settings(folder)
  shutil.rmtree(folder / "tokenizer")
  with pytest.raises(CheckpointError, match=r"folders are missing: \['tokenizer'\]"):
    read_model_index(folder)
