"""The config a workdir keeps (jvdm.training.run_config): saved, read back, completed for old
workdirs, and checked on resume."""

import json

import pytest

from configs import bouncing_shapes_dit, bouncing_shapes_unet
from jvdm.errors import CheckpointError
from jvdm.builders import get_model, make_video_sampler
from jvdm.training.run_config import (
  CONFIG_FILE,
  FIELDS_ADDED,
  check_run_config_matches,
  load_run_config,
  save_run_config,
)


def test_saved_config_reads_back_equal(tmp_path):
  config = bouncing_shapes_unet.get_config("tiny")
  save_run_config(tmp_path, config)
  loaded = load_run_config(tmp_path)
  assert loaded.to_dict() == config.to_dict()  # tuples stay tuples, nothing added
  assert isinstance(loaded.model.channel_mults, tuple)


def _write_without(tmp_path, config, removed):
  raw = json.loads(config.to_json())
  for dotted in removed:
    section, field = dotted.split(".")
    del raw[section][field]
  (tmp_path / CONFIG_FILE).write_text(json.dumps(raw))


def test_old_workdir_configs_get_the_fields_added_since(tmp_path):
  config = bouncing_shapes_unet.get_config("default")
  with config.unlocked():
    config.sample.steps = 123  # present fields keep their value
  removed = [
    "model.pixel_head_channels",
    "model.space_time_rope",
    "diffusion.context_frames",
    "sample.time_power",
    "sample.chunk_frames",
    "mesh.dcn_shape",
    "train.condition_dropout",
  ]
  _write_without(tmp_path, config, removed)
  loaded = load_run_config(tmp_path)
  assert (
    loaded.model.pixel_head_channels == FIELDS_ADDED["model:unet3d"]["pixel_head_channels"] == 0
  )
  assert loaded.model.space_time_rope is False
  assert loaded.diffusion.context_frames == 0
  assert loaded.sample.time_power == 1.0 and loaded.sample.chunk_frames == 4
  assert loaded.sample.steps == 123
  assert loaded.mesh.dcn_shape.to_dict() == {"data": 1, "fsdp": 1, "context": 1, "tensor": 1}
  # The DiT's fields go to DiT configs only.
  assert "cond_dim" not in loaded.model and "condition" not in loaded.model
  # The completed config builds its model and sampler, reading every field directly.
  assert get_model(loaded).pixel_head_channels == 0
  assert make_video_sampler(loaded, lambda *a: None).num_steps == 123


def test_old_dit_configs_get_the_dit_fields(tmp_path):
  config = bouncing_shapes_dit.get_config("tiny")
  _write_without(tmp_path, config, ["model.condition", "model.context_parallel"])
  loaded = load_run_config(tmp_path)
  assert loaded.model.condition == "none" and loaded.model.context_parallel is None
  assert "pixel_head_channels" not in loaded.model


def test_resume_refuses_a_config_of_other_shapes(tmp_path, caplog):
  config = bouncing_shapes_unet.get_config("tiny")
  save_run_config(tmp_path, config)
  other_steps = config.copy_and_resolve_references()
  other_steps.train.num_steps = 99
  check_run_config_matches(tmp_path, other_steps)  # allowed, with a warning
  assert "train.num_steps" in caplog.text
  other_model = config.copy_and_resolve_references()
  other_model.model.base_channels = 32
  with pytest.raises(CheckpointError, match="model.base_channels"):
    check_run_config_matches(tmp_path, other_model)


def test_a_folder_without_config_is_not_a_workdir(tmp_path):
  with pytest.raises(CheckpointError, match="not a jvdm workdir"):
    load_run_config(tmp_path)
