"""The kind of training job a config is (jvdm.training.tasks)."""

from configs import bouncing_shapes_dit, bouncing_shapes_unet, bouncing_shapes_vae
from jvdm.training.evaluation import diffusion_evaluation
from jvdm.training.step import train_step_from_config
from jvdm.training.tasks import AUTOENCODER, DIFFUSION, task_for
from jvdm.training.vae_objective import vae_train_step_from_config
from jvdm.workdir import network_video_shape


def test_a_vae_trains_as_an_autoencoder_on_pixels():
  config = bouncing_shapes_vae.get_config("tiny")
  assert task_for(config) is AUTOENCODER and AUTOENCODER.sees_pixels
  assert AUTOENCODER.make_train_step is vae_train_step_from_config
  data = config.data
  assert network_video_shape(config) == (data.num_frames, data.height, data.width, data.channels)


def test_unets_and_dits_train_as_diffusion_models():
  for config in (bouncing_shapes_unet.get_config("tiny"), bouncing_shapes_dit.get_config("tiny")):
    assert task_for(config) is DIFFUSION and not DIFFUSION.sees_pixels
  assert DIFFUSION.make_train_step is train_step_from_config
  assert DIFFUSION.make_evaluation is diffusion_evaluation
