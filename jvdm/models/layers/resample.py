"""Spatial 2x down- and upsampling of `[B, T, H, W, C]` videos; time is never resampled."""

import einops
import flax.linen as nn
import jax.numpy as jnp

from jvdm.models.layers.conv import SpatialConv


class Downsample(nn.Module):
  """Stride-2 3x3 conv on each frame: `[B, T, H, W, C]` -> `[B, T, H/2, W/2, features]`."""

  features: int
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    return SpatialConv(
      self.features, 3, strides=2, dtype=self.dtype, param_dtype=self.param_dtype, name="conv"
    )(x)


class Upsample(nn.Module):
  """Nearest-neighbour 2x then a 3x3 conv: `[B, T, H, W, C]` -> `[B, T, 2H, 2W, features]`."""

  features: int
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    x = einops.repeat(x, "b t h w c -> b t (h h2) (w w2) c", h2=2, w2=2)
    return SpatialConv(
      self.features, 3, dtype=self.dtype, param_dtype=self.param_dtype, name="conv"
    )(x)
