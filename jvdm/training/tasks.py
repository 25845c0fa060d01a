"""What a training job trains: a diffusion model (on pixel videos, or on a VAE's latents) or a
video autoencoder. The loop and the workdir loader ask the config's task for its train step,
its evaluation and what the network sees; this is the one place that reads `model.name` to
tell them apart."""

import dataclasses
from typing import Any, Callable

import ml_collections

from jvdm.training.evaluation import Evaluate, autoencoder_evaluation, diffusion_evaluation
from jvdm.training.step import train_step_from_config
from jvdm.training.vae_objective import vae_train_step_from_config


@dataclasses.dataclass(frozen=True)
class Task:
  """A kind of training job.

  Attributes:
    name: "diffusion" or "autoencoder".
    denoises: the network is a denoiser `(x, t[, cond])`; False: an autoencoder `(x)`.
    sees_pixels: the network's input is the pixel video; False: what diffusion sees (the
      pixels, or a VAE's latents, `jvdm.workdir.diffusion_video_shape`).
    make_train_step: `(config, model, tx, schedule) -> train_step(state, batch, rng)`.
    make_evaluation: `(config, model, workdir, metrics_log, video_shape, latent_space) ->
      evaluate(step, ema_params)`, run every `train.sample_every` steps and at the end.
  """

  name: str
  denoises: bool
  sees_pixels: bool
  make_train_step: Callable[..., Any]
  make_evaluation: Callable[..., Evaluate]


DIFFUSION = Task("diffusion", True, False, train_step_from_config, diffusion_evaluation)
AUTOENCODER = Task(
  "autoencoder",
  False,
  True,
  vae_train_step_from_config,
  # A VAE reconstructs held-out clips: no sampler shape, no latent space.
  lambda config, model, workdir, metrics_log, video_shape, latent_space: autoencoder_evaluation(
    config, model, workdir, metrics_log
  ),
)


def task_for(config: ml_collections.ConfigDict) -> Task:
  """The task of `config`: a VAE (`model.name == "vae"`) trains as an autoencoder, every other
  model as a diffusion model."""
  return AUTOENCODER if config.model.name == "vae" else DIFFUSION
