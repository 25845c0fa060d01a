"""The denoising training loss."""

from typing import Callable

import jax
import jax.numpy as jnp

from jvdm.diffusion.parameterization import target_for_prediction
from jvdm.diffusion.vp import VPProcess, broadcast_to_video


def sample_timesteps(rng: jax.Array, batch: int, frames: int, per_frame: bool) -> jnp.ndarray:
  """Uniform t in [0, 1]: `[B]`, or `[B, T]` independent per frame (FVDM, Liu et al. 2024)."""
  shape = (batch, frames) if per_frame else (batch,)
  return jax.random.uniform(rng, shape)


def diffusion_loss(network: Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray], process: VPProcess,
                   prediction: str, x: jnp.ndarray, rng: jax.Array,
                   per_frame_noise: bool = False) -> jnp.ndarray:
  """Mean squared error of the network's prediction at a random noise level.

  Args:
    network: `(z_t [B, T, H, W, C], t [B] or [B, T]) -> prediction [B, T, H, W, C]`.
    process: the forward process.
    prediction: 'v', 'eps' or 'x0': what the network is trained to output.
    x: clean videos `[B, T, H, W, C]` in [-1, 1].
    rng: a PRNG key.
    per_frame_noise: draw an independent t for every frame.

  Returns:
    The scalar loss.
  """
  time_rng, noise_rng = jax.random.split(rng)
  t = sample_timesteps(time_rng, x.shape[0], x.shape[1], per_frame_noise)
  noise = jax.random.normal(noise_rng, x.shape, x.dtype)
  alpha, sigma = process.alpha_sigma(t)
  alpha, sigma = broadcast_to_video(alpha, x), broadcast_to_video(sigma, x)
  z = alpha * x + sigma * noise
  target = target_for_prediction(prediction, x, noise, alpha, sigma)
  output = network(z, t).astype(jnp.float32)
  return jnp.mean(jnp.square(output - target))
