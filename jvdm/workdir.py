"""A trained run on disk, read back: its config, model, EMA params and step, and for latent
diffusion the VAE whose latents it diffuses.

The one loader that sampling (`sample.py`), latent diffusion, data preparation and the
benchmarks share. `train.py --workdir W` writes W: `config.json` (`jvdm.training.run_config`),
`checkpoints/` (`jvdm.training.checkpoint`) and, for a VAE, `latent_statistics.json`.
"""

import dataclasses
import logging
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from etils import epath

from jvdm.builders import get_model, is_latent, null_condition_for, pixel_video_shape
from jvdm.data.transforms import to_network_input
from jvdm.errors import CheckpointError
from jvdm.models.vae.autoencoder import VideoAutoencoder
from jvdm.builders import vae_from_config
from jvdm.io.latent_statistics import load_latent_statistics
from jvdm.models.vae.latent_space import LatentSpace, check_latent_channels, jitted_encode
from jvdm.parallel.mesh import make_mesh
from jvdm.training.checkpoint import CHECKPOINT_DIR, Checkpointer
from jvdm.training.optimizer import make_optimizer
from jvdm.training.run_config import load_run_config
from jvdm.training.state import abstract_train_state
from jvdm.training.tasks import task_for

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TrainedRun:
  """What `load_trained_run` reads from a workdir."""

  workdir: epath.Path
  config: ml_collections.ConfigDict
  model: nn.Module
  params: Any  # the EMA params, sharded on `mesh`
  step: int  # the checkpoint's training step
  mesh: jax.sharding.Mesh


def config_mesh(config: ml_collections.ConfigDict) -> jax.sharding.Mesh:
  """The device mesh `config.mesh` describes."""
  return make_mesh(config.mesh.shape, dcn_shape=config.mesh.dcn_shape)


def diffusion_video_shape(config: ml_collections.ConfigDict) -> tuple[int, int, int, int]:
  """`(T, H, W, C)` of the diffusion network's input: the pixel video, or its latent under the
  VAE of `config.latent.vae_workdir` (read from that workdir's config; checked against
  `config.latent.channels`)."""
  if not is_latent(config):
    return pixel_video_shape(config)
  vae, _ = vae_from_workdir(config.latent.vae_workdir)
  check_latent_channels(vae, config.latent)
  return vae.latent_shape(pixel_video_shape(config))


def network_video_shape(config: ml_collections.ConfigDict) -> tuple[int, int, int, int]:
  """`(T, H, W, C)` of what the network of `config`'s task sees: the pixel video for an
  autoencoder, `diffusion_video_shape` for a diffusion model."""
  return (
    pixel_video_shape(config) if task_for(config).sees_pixels else diffusion_video_shape(config)
  )


def restore_ema_params(
  workdir: str | epath.Path,
  config: ml_collections.ConfigDict,
  model: nn.Module,
  mesh: jax.sharding.Mesh,
) -> tuple[Any, int]:
  """(the EMA params of the newest intact checkpoint of `workdir`, its step), sharded on
  `mesh` by the config's logical axis rules."""
  checkpointer = Checkpointer(epath.Path(workdir) / CHECKPOINT_DIR, read_only=True)
  try:
    if checkpointer.latest_step() is None:
      raise CheckpointError(f"The workdir {workdir} has no complete checkpoint yet; train first.")
    tx, _ = make_optimizer(config.optim, config.train.num_steps)
    video_shape = network_video_shape(config)
    _, _, abstract = abstract_train_state(
      model,
      tx,
      video_shape,
      mesh,
      config.mesh.logical_axis_rules,
      null_condition_for(config),
      denoiser=task_for(config).denoises,
    )
    return checkpointer.restore_params(abstract.ema_params)
  finally:
    checkpointer.close()


def load_trained_run(
  workdir: str | epath.Path, mesh: jax.sharding.Mesh | None = None
) -> TrainedRun:
  """The config, model, EMA params and step of `workdir`'s latest checkpoint, with the params
  on `mesh` (default: the mesh of the run's config)."""
  workdir = epath.Path(workdir)
  if not workdir.exists():
    raise CheckpointError(f"The workdir {workdir} does not exist; pass the --workdir of train.py.")
  config = load_run_config(workdir)
  mesh = config_mesh(config) if mesh is None else mesh
  model = get_model(config)
  with jax.set_mesh(mesh), nn.logical_axis_rules(config.mesh.logical_axis_rules):
    params, step = restore_ema_params(workdir, config, model, mesh)
  return TrainedRun(workdir, config, model, params, step, mesh)


def vae_from_workdir(
  workdir: str | epath.Path,
) -> tuple[VideoAutoencoder, ml_collections.ConfigDict]:
  """The VAE module (no params) and the config it was trained with in `workdir`."""
  config = load_run_config(workdir)
  if config.model.name != "vae":
    raise CheckpointError(
      f"{workdir} holds a {config.model.name!r} model; latent diffusion needs "
      "the workdir of a trained VAE (model.name 'vae')."
    )
  return vae_from_config(config), config


def vae_encoder(vae_workdir: str | epath.Path) -> Callable[[np.ndarray], np.ndarray]:
  """`uint8 [N, T, H, W, C] -> float32 [N, t, h, w, c]`: the posterior means (not normalized)
  under the EMA params of the VAE in `vae_workdir`, for `jvdm.data.prepare`. Training
  normalizes them with the VAE's latent statistics (`LatentSpace.to_latents`)."""
  model, config = vae_from_workdir(vae_workdir)
  params, _ = restore_ema_params(vae_workdir, config, model, config_mesh(config))
  encode = jitted_encode(model)
  return lambda videos: np.asarray(encode(params, to_network_input(jnp.asarray(videos))))


def load_latent_space(
  latent_config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh
) -> LatentSpace:
  """The VAE of `latent_config.vae_workdir` with its EMA params and latent statistics."""
  workdir = latent_config.vae_workdir
  model, vae_config = vae_from_workdir(workdir)
  check_latent_channels(model, latent_config)
  params, step = restore_ema_params(workdir, vae_config, model, mesh)
  statistics = load_latent_statistics(workdir)
  if statistics.get("step") != step:
    logger.warning(
      "The latent statistics of %s were computed at step %s, its checkpoint is step %d.",
      workdir,
      statistics.get("step"),
      step,
    )
  return LatentSpace(
    model,
    params,
    shift=statistics["shift"],
    scale=statistics["scale"],
    decode_chunk_frames=int(latent_config.decode_chunk_frames),
    decode_tile=int(latent_config.decode_tile),
    decode_tile_overlap=int(latent_config.decode_tile_overlap),
    decode_row_slices=int(latent_config.decode_row_slices),
    sample_posterior=bool(latent_config.sample_posterior),
  )
