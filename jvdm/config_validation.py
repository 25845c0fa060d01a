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
from jvdm.data.pipeline import DATASETS
from jvdm.diffusion import LOSS_WEIGHTINGS, PREDICTIONS, PROCESSES, SCHEDULES, TIME_SAMPLINGS
from jvdm.errors import ConfigError
from jvdm.parallel.axes import DATA, FSDP, TENSOR
from jvdm.parallel.mesh import split_mesh_shape
from jvdm.samplers import SAMPLERS
from jvdm.training.tasks import AUTOENCODER, task_for
from jvdm.workdir import diffusion_video_shape

DTYPES = ("float32", "bfloat16", "float16")


def _positive(config: ml_collections.ConfigDict, *names: str, allow_zero: bool = False) -> None:
  for name in names:
    value = config
    for key in name.split("."):
      value = value[key]
    if not isinstance(value, int) or isinstance(value, bool) or value < (0 if allow_zero else 1):
      expected = "an integer >= 0" if allow_zero else "a positive integer"
      raise ConfigError(f"config.{name} must be {expected}, got {value!r}.")


def _one_of(value, valid, name: str) -> None:
  if value not in valid:
    raise ConfigError(f"config.{name}={value!r} is not valid; expected one of {list(valid)}.")


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError naming the first bad value."""
  _one_of(config.data.name, DATASETS, "data.name")
  _positive(
    config,
    "data.num_frames",
    "data.height",
    "data.width",
    "data.channels",
    "data.batch_size",
    "train.num_steps",
    "train.log_every",
    "train.checkpoint_every",
    "train.keep_checkpoints",
    "train.num_sample_videos",
    "sample.fps",
    "sample.video_scale",
  )
  _positive(config, "train.sample_every", "data.worker_count", allow_zero=True)
  if "keep_checkpoint_every" in config.train:
    _positive(config, "train.keep_checkpoint_every", allow_zero=True)
  if "microbatches" in config.train:
    _positive(config, "train.microbatches", "train.max_consecutive_skipped")
    if config.data.batch_size % config.train.microbatches:
      raise ConfigError(
        f"data.batch_size={config.data.batch_size} does not split into "
        f"train.microbatches={config.train.microbatches} equal micro-batches."
      )
  if config.data.channels != 3:  # the sources yield RGB (latents are described by config.latent)
    raise ConfigError(
      f"config.data.channels={config.data.channels}, but the {config.data.name!r} "
      "dataset yields RGB videos: expected 3."
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
  _one_of(config.model.dtype, DTYPES, "model.dtype")
  _one_of(config.model.param_dtype, DTYPES, "model.param_dtype")
  if not config.optim.learning_rate > 0:
    raise ConfigError(f"config.optim.learning_rate must be > 0, got {config.optim.learning_rate}.")
  if not 0 <= config.optim.warmup_steps < config.train.num_steps:
    raise ConfigError(
      f"config.optim.warmup_steps={config.optim.warmup_steps} must be in [0, "
      f"config.train.num_steps={config.train.num_steps})."
    )
  if not 0.0 <= config.optim.ema_decay < 1.0:
    raise ConfigError(f"config.optim.ema_decay must be in [0, 1), got {config.optim.ema_decay}.")
  if task_for(config) is AUTOENCODER:
    _validate_autoencoder(config)
  else:
    _validate_diffusion(config)
  _validate_mesh(config)


def _validate_autoencoder(config: ml_collections.ConfigDict) -> None:
  from jvdm.training.vae_objective import RECONSTRUCTION_LOSSES  # pylint: disable=g-import-not-at-top

  vae = vae_from_config(config)  # checks the architecture's own fields
  vae.latent_shape((config.data.num_frames, config.data.height, config.data.width))
  _one_of(config.vae_loss.reconstruction, RECONSTRUCTION_LOSSES, "vae_loss.reconstruction")
  if config.vae_loss.kl_weight < 0:
    raise ConfigError(f"config.vae_loss.kl_weight must be >= 0, got {config.vae_loss.kl_weight}.")


def _validate_diffusion(config: ml_collections.ConfigDict) -> None:
  _positive(config, "sample.steps")
  if is_latent(config):
    diffusion_video_shape(config)  # the VAE's workdir exists, fits the data and the channels
  _one_of(config.diffusion.process, PROCESSES, "diffusion.process")
  _one_of(config.diffusion.schedule, SCHEDULES, "diffusion.schedule")
  make_process(config.diffusion)  # checks the process's own fields (e.g. a beta schedule name)
  _one_of(config.diffusion.prediction, PREDICTIONS, "diffusion.prediction")
  _one_of(config.diffusion.loss_weighting, LOSS_WEIGHTINGS, "diffusion.loss_weighting")
  _one_of(config.diffusion.time_sampling, TIME_SAMPLINGS, "diffusion.time_sampling")
  for name in ("per_frame_noise", "staggered_noise"):
    if not 0.0 <= config.diffusion[name] <= 1.0:
      raise ConfigError(
        f"config.diffusion.{name} is a probability in [0, 1], got {config.diffusion[name]}."
      )
  if null_condition_for(config) is not None:  # also checks model.condition and the data
    if config.model.name != "dit":
      raise ConfigError(
        f"config.model.condition='caption' needs a model that cross-attends "
        f"('dit'), not {config.model.name!r}."
      )
    if not 0.0 <= config.train.condition_dropout < 1.0:
      raise ConfigError(
        f"config.train.condition_dropout is a probability in [0, 1), got "
        f"{config.train.condition_dropout}."
      )
  _one_of(config.sample.sampler, SAMPLERS, "sample.sampler")
  make_video_sampler(config, apply_fn=None)  # the sampler's settings, grid and guidance
  if config.sample.eta < 0:
    raise ConfigError(f"config.sample.eta must be >= 0, got {config.sample.eta}.")


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
