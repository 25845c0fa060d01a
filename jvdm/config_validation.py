"""Checks a whole config before any compute, so a bad value stops the run at once."""

import jax
import ml_collections

from jvdm.builders import (
  vae_from_config,
  is_latent,
  make_process,
  make_video_sampler,
  null_condition_for,
)
from jvdm.config_rules import check_fields
from jvdm.errors import ConfigError
from jvdm.parallel.axes import DATA, FSDP, TENSOR
from jvdm.parallel.mesh import split_mesh_shape
from jvdm.training.tasks import AUTOENCODER, task_for
from jvdm.workdir import diffusion_video_shape


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError naming the first bad value: every field against its rule
  (`jvdm.config_rules`), then the rules that relate fields to each other."""
  if config.data.channels != 3:  # the sources yield RGB (latents are described by config.latent)
    raise ConfigError(
      f"config.data.channels={config.data.channels}, but the {config.data.name!r} "
      "dataset yields RGB videos: expected 3."
    )
  check_fields(config)
  if config.data.batch_size % config.train.microbatches:
    raise ConfigError(
      f"data.batch_size={config.data.batch_size} does not split into "
      f"train.microbatches={config.train.microbatches} equal micro-batches."
    )
  if config.data.name == "video_folder" and not config.data.video_folder.root:
    raise ConfigError(
      "config.data.name='video_folder' needs config.data.video_folder.root, a "
      "folder of video files; got ''."
    )
  if config.data.name == "tfds" and not config.data.tfds.name:
    raise ConfigError(
      "config.data.name='tfds' needs config.data.tfds.name, a dataset prepared "
      "with `python -m jvdm.data.prepare` (or any TFDS dataset); got ''."
    )
  if not config.optim.warmup_steps < config.train.num_steps:
    raise ConfigError(
      f"config.optim.warmup_steps={config.optim.warmup_steps} must be in [0, "
      f"config.train.num_steps={config.train.num_steps})."
    )
  if task_for(config) is AUTOENCODER:
    _validate_autoencoder(config)
  else:
    _validate_diffusion(config)
  _validate_mesh(config)


def _validate_autoencoder(config: ml_collections.ConfigDict) -> None:
  vae = vae_from_config(config)  # checks the architecture's own fields
  vae.latent_shape((config.data.num_frames, config.data.height, config.data.width))


def _validate_diffusion(config: ml_collections.ConfigDict) -> None:
  if is_latent(config):
    diffusion_video_shape(config)  # the VAE's workdir exists, fits the data and the channels
  make_process(config.diffusion)  # checks the process's own fields (e.g. a beta schedule name)
  if null_condition_for(config) is not None:  # also checks model.condition and the data
    if config.model.name != "dit":
      raise ConfigError(
        f"config.model.condition='caption' needs a model that cross-attends "
        f"('dit'), not {config.model.name!r}."
      )
  make_video_sampler(config, apply_fn=None)  # the sampler's settings, grid and guidance


def _validate_mesh(config: ml_collections.ConfigDict) -> None:
  mesh, dcn = split_mesh_shape(config.mesh.shape, config.mesh.dcn_shape, jax.device_count())
  mesh = {name: size * dcn[name] for name, size in mesh.items()}  # whole-job axis sizes
  if config.model.name == "dit" and config.model.num_heads % mesh[TENSOR]:
    raise ConfigError(
      f"config.model.num_heads={config.model.num_heads} is not divisible by the "
      f"tensor axis of size {mesh[TENSOR]} (mesh {mesh}): tensor parallelism "
      "splits whole heads."
    )
  microbatch = config.data.batch_size // config.train.microbatches
  if microbatch % (mesh[DATA] * mesh[FSDP]):
    raise ConfigError(
      f"A micro-batch of {microbatch} videos (data.batch_size="
      f"{config.data.batch_size} / train.microbatches="
      f"{config.train.microbatches}) does not split over the "
      f"data-parallel size {mesh[DATA] * mesh[FSDP]} (data x fsdp of {mesh})."
    )
