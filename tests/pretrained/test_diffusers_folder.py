"""A diffusers-format folder in Wan 2.1's layout, built from the shipped tiny components: the
index, the prompt encoder and the scheduler read from it, and what a bad folder says."""

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
WAN_INDEX = {
  "_class_name": "WanPipeline",
  "_diffusers_version": "0.42.1",
  "scheduler": ["diffusers", "UniPCMultistepScheduler"],
  "text_encoder": ["transformers", "UMT5EncoderModel"],
  "tokenizer": ["transformers", "T5TokenizerFast"],
  "transformer": ["diffusers", "WanTransformer3DModel"],
  "vae": ["diffusers", "AutoencoderKLWan"],
}
WAN_SCHEDULER = {  # the values of Wan2.1-T2V-1.3B-Diffusers/scheduler/scheduler_config.json
  "_class_name": "UniPCMultistepScheduler",
  "beta_end": 0.02,
  "beta_schedule": "linear",
  "beta_start": 0.0001,
  "disable_corrector": [],
  "dynamic_thresholding_ratio": 0.995,
  "final_sigmas_type": "zero",
  "flow_shift": 3.0,
  "lower_order_final": True,
  "num_train_timesteps": 1000,
  "predict_x0": True,
  "prediction_type": "flow_prediction",
  "rescale_betas_zero_snr": False,
  "sample_max_value": 1.0,
  "solver_order": 2,
  "solver_p": None,
  "solver_type": "bh2",
  "steps_offset": 0,
  "thresholding": False,
  "timestep_spacing": "linspace",
  "trained_betas": None,
  "use_beta_sigmas": False,
  "use_dynamic_shifting": False,
  "use_exponential_sigmas": False,
  "use_flow_sigmas": True,
  "use_karras_sigmas": False,
}


@pytest.fixture(name="folder")
def fixture_folder(tmp_path):
  folder = tmp_path / "wan_tiny"
  shutil.copytree(
    FIXTURES / "umt5_tiny", folder / "text_encoder", ignore=shutil.ignore_patterns("*.npz")
  )
  shutil.copytree(
    FIXTURES / "tokenizer_tiny", folder / "tokenizer", ignore=shutil.ignore_patterns("*.npz")
  )
  for name in ("transformer", "vae", "scheduler"):
    (folder / name).mkdir()
  (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(WAN_SCHEDULER))
  (folder / "model_index.json").write_text(json.dumps(WAN_INDEX))
  return folder


def test_the_index_and_the_components_jvdm_builds(folder):
  assert read_model_index(folder)["transformer"] == ("diffusers", "WanTransformer3DModel")
  reference = np.load(FIXTURES / "tokenizer_tiny" / "prompts.npz")
  embeds = load_prompt_encoder(folder, max_length=12)([str(p) for p in reference["prompts"]])
  expected = reference["embeds"]
  assert np.abs(np.asarray(embeds) - expected).max() <= 1e-4 * np.abs(expected).max()
  settings = scheduler_settings(folder)
  assert (settings.sampler, settings.spacing, settings.prediction) == ("unipc", "flow", "flow")
  assert settings.process.shift == 3.0


def test_a_bad_folder_is_named(folder, tmp_path):
  with pytest.raises(CheckpointError, match="not a diffusers-format model folder"):
    read_model_index(tmp_path / "elsewhere")
  index = dict(WAN_INDEX, transformer=["diffusers", "CogVideoXTransformer3DModel"])
  (folder / "model_index.json").write_text(json.dumps(index))
  with pytest.raises(ConfigError, match="'transformer' of .* is a CogVideoXTransformer3DModel"):
    check_component(folder, "transformer")
  config = dict(WAN_SCHEDULER, use_flow_sigmas=False)
  (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(config))
  with pytest.raises(ConfigError, match="use_flow_sigmas=False"):
    scheduler_settings(folder)
  shutil.rmtree(folder / "tokenizer")
  with pytest.raises(CheckpointError, match=r"folders are missing: \['tokenizer'\]"):
    read_model_index(folder)
