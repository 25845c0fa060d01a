"""The VAE's training objective: reconstruction + KL (the LDM autoencoder's, without its GAN).

loss = mean |x - D(z)|  (or squared)  +  kl_weight * KL(q(z|x) || N(0, I)) / pixels per video,

with z a posterior sample (reparameterized). Dividing the summed KL by the pixel count gives
`kl_weight` the meaning it has in the LDM autoencoder, whose reconstruction term is summed
over pixels (Rombach et al. 2022, Appendix G; kl_weight 1e-6 there).
"""

import math
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from jvdm.errors import ConfigError
from jvdm.ops.gaussian import kl_to_standard_normal, sample_posterior
from jvdm.data.transforms import to_network_input
from jvdm.training.step import Batch, StepInputs, make_step_for_loss

RECONSTRUCTION_LOSSES = ("l1", "l2")


def make_vae_train_step(
  model: Any,  # a jvdm.models.VideoAutoencoder
  tx: optax.GradientTransformation,
  schedule: optax.Schedule,
  ema_decay: float,
  kl_weight: float = 1e-6,
  reconstruction_loss: str = "l1",
  microbatches: int = 1,
):
  """The train step of `model` (see `jvdm.training.step.make_step_for_loss`); logs the
  reconstruction and KL terms beside the loss."""
  if reconstruction_loss not in RECONSTRUCTION_LOSSES:
    raise ConfigError(
      f"vae reconstruction_loss must be one of {RECONSTRUCTION_LOSSES}, got "
      f"{reconstruction_loss!r}."
    )
  if kl_weight < 0:
    raise ConfigError(f"vae kl_weight must be >= 0, got {kl_weight}.")

  def make_inputs(batch: Batch, step_rng: jax.Array) -> StepInputs:
    videos = to_network_input(batch["video"])
    _, noise_rng = jax.random.split(step_rng)
    return StepInputs(videos, jax.random.split(noise_rng, videos.shape[0]))

  def loss_fn(params, inputs: StepInputs, dropout_key):
    del dropout_key  # the VAE has no dropout
    videos = inputs.video
    mean, logvar = model.apply({"params": params}, videos, method=model.encode)
    z = jax.vmap(sample_posterior)(inputs.keys, mean, logvar)  # a key per video
    error = model.apply({"params": params}, z, method=model.decode) - videos
    reconstruction = jnp.mean(jnp.abs(error) if reconstruction_loss == "l1" else jnp.square(error))
    kl = jnp.mean(kl_to_standard_normal(mean, logvar)) / math.prod(videos.shape[1:])
    return reconstruction + kl_weight * kl, {"reconstruction": reconstruction, "kl": kl}

  return make_step_for_loss(loss_fn, make_inputs, tx, schedule, ema_decay, microbatches)


def vae_train_step_from_config(
  config: ml_collections.ConfigDict,
  model: Any,  # a jvdm.models.VideoAutoencoder
  tx: optax.GradientTransformation,
  schedule: optax.Schedule,
):
  return make_vae_train_step(
    model,
    tx,
    schedule,
    config.optim.ema_decay,
    kl_weight=config.vae_loss.kl_weight,
    reconstruction_loss=config.vae_loss.reconstruction,
    microbatches=config.train.microbatches,
  )
