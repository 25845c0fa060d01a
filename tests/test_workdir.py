"""Loading a trained run (jvdm.workdir): the errors before any checkpoint exists. Loading a
trained one is tested where a run is trained (tests/training/test_training.py)."""

import pytest

from configs import bouncing_shapes_unet
from jvdm.errors import CheckpointError
from jvdm.training.run_config import save_run_config
from jvdm.workdir import load_trained_run, vae_from_workdir


def test_a_missing_workdir_is_named(tmp_path):
  with pytest.raises(CheckpointError, match="does not exist"):
    load_trained_run(tmp_path / "nowhere")


def test_a_workdir_without_checkpoints_says_train_first(tmp_path):
  save_run_config(tmp_path, bouncing_shapes_unet.get_config("tiny"))
  with pytest.raises(CheckpointError, match="no complete checkpoint yet; train first"):
    load_trained_run(tmp_path)


def test_latent_diffusion_needs_a_vae_workdir(tmp_path):
  save_run_config(tmp_path, bouncing_shapes_unet.get_config("tiny"))
  with pytest.raises(CheckpointError, match="holds a 'unet3d' model"):
    vae_from_workdir(tmp_path)
