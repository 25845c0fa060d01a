"""The variance-preserving process z_t = alpha_t x + sigma_t eps, alpha^2 + sigma^2 = 1."""

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jvdm.errors import ShapeError


def broadcast_to_video(coefficient: jnp.ndarray, video: jnp.ndarray) -> jnp.ndarray:
  """Reshapes a per-sample `[B]` or per-frame `[B, T]` coefficient to broadcast over a video.

  Args:
    coefficient: `[B]` or `[B, T]`.
    video: `[B, T, H, W, C]`.

  Returns:
    `[B, 1, 1, 1, 1]` or `[B, T, 1, 1, 1]`.
  """
  if video.ndim != 5:
    raise ShapeError(f"Expected a video [B, T, H, W, C], got shape {video.shape}.")
  batch, frames = video.shape[:2]
  if coefficient.shape not in ((batch,), (batch, frames)):
    raise ShapeError(
      f"Timesteps must have shape [B]=({batch},) or [B, T]=({batch}, {frames}) for a video of "
      f"shape {video.shape}; got {coefficient.shape}."
    )
  return coefficient.reshape(coefficient.shape + (1,) * (video.ndim - coefficient.ndim))


def float_time(t) -> jnp.ndarray:
  """t as a float array: float64 stays float64 (reference tests), anything else is float32."""
  t = jnp.asarray(t)
  return t.astype(jnp.result_type(t, jnp.float32))


@dataclasses.dataclass(frozen=True)
class VPProcess:
  """A VP diffusion process defined by its log-SNR schedule (Kingma et al. 2021, VDM)."""

  logsnr_fn: Callable[[jnp.ndarray], jnp.ndarray]

  def alpha_sigma(self, t: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Returns (alpha_t, sigma_t), each shaped like t (float64 for float64 t, else float32)."""
    logsnr = self.logsnr_fn(float_time(t))
    return jnp.sqrt(jax.nn.sigmoid(logsnr)), jnp.sqrt(jax.nn.sigmoid(-logsnr))

  def scale_model_input(self, z: jnp.ndarray, t: jnp.ndarray) -> jnp.ndarray:
    del t  # a VP sample already has unit scale
    return z

  def time_at_noise_ratio(self, ratio) -> np.ndarray:
    """float64 t at which sigma / alpha equals `ratio` (numpy; for building sampling grids)."""
    ratio = np.asarray(ratio, np.float64)
    with np.errstate(divide="ignore"):
      return self.logsnr_fn.time_at_logsnr(-2.0 * np.log(ratio))

  def noise_ratio_range(self) -> tuple[float, float]:
    """(smallest, largest) sigma / alpha a sampler should use (Karras grids span it)."""
    return self.logsnr_fn.noise_ratio_range()
