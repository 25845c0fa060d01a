"""Sinusoidal embeddings of continuous positions, and the per-frame timestep embedding.

Time is per frame (FVDM, Liu et al. 2024; VDT, Lu et al. 2023): a `[B, T]` timestep gives
every frame its own embedding, so frames at different noise levels are told apart.
"""

import math

import flax.linen as nn
import jax.numpy as jnp

from jvdm.errors import ConfigError
from jvdm.models.layers.dense import dense


ORDERS = ("sin_cos", "cos_sin")


def sinusoidal_embedding(
  positions: jnp.ndarray, dim: int, max_period: float = 10_000.0, order: str = "sin_cos"
) -> jnp.ndarray:
  """Transformer sinusoids (Vaswani et al. 2017) of real-valued positions.

  Args:
    positions: float or int array of any shape `[...]`.
    dim: embedding width; must be even (half sines, half cosines).
    max_period: longest wavelength.
    order: "sin_cos" (jvdm's networks) or "cos_sin" (diffusers' `flip_sin_to_cos=True`, Wan).

  Returns:
    float32 `[..., dim]`, `[sin(p * f_i), cos(p * f_i)]` with
    `f_i = max_period ** (-i / (dim / 2))` (the halves swapped for "cos_sin").
  """
  if dim <= 0 or dim % 2:
    raise ConfigError(f"sinusoidal embedding width must be a positive even number, got {dim}")
  if order not in ORDERS:
    raise ConfigError(f"sinusoid order must be one of {ORDERS}, got {order!r}")
  half = dim // 2
  frequencies = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
  angles = positions.astype(jnp.float32)[..., None] * frequencies  # [..., dim / 2]
  halves = [jnp.sin(angles), jnp.cos(angles)]
  return jnp.concatenate(halves if order == "sin_cos" else halves[::-1], axis=-1)


class TimestepEmbedding(nn.Module):
  """Continuous diffusion time -> sinusoids -> 2-layer MLP (DDPM, Ho et al. 2020).

  Attributes:
    features: output width (4 * base_channels in the UNet).
    frequency_dim: width of the sinusoidal features fed to the MLP.
    time_scale: t in [0, 1] is multiplied by this before the sinusoids, so the
      frequencies match the ones tuned for 1000 discrete DDPM steps.
    order: of the sinusoids' halves (`sinusoidal_embedding`).
    integer_times: embed floor(t * time_scale): the integer timesteps at which diffusers'
      DDPM-family schedulers (UniPC, DPM-Solver, DDIM) call a network it trained.
  """

  features: int
  frequency_dim: int
  time_scale: float = 1000.0
  order: str = "sin_cos"
  integer_times: bool = False
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, t: jnp.ndarray) -> jnp.ndarray:
    """Embeds `t` of any shape `[...]` (e.g. `[B, T]`) to `[..., features]`."""
    t = t * self.time_scale
    if self.integer_times:
      t = jnp.floor(t)
    embedding = sinusoidal_embedding(t, self.frequency_dim, order=self.order)
    kwargs = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    embedding = dense(self.features, name="dense_0", **kwargs)(embedding)
    embedding = nn.swish(embedding)
    return dense(self.features, name="dense_1", **kwargs)(embedding)  # [..., features]
