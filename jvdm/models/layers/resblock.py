"""Residual block with a per-frame timestep embedding, for `[B, T, H, W, C]` videos."""

import flax.linen as nn
import jax.numpy as jnp

from jvdm.models.layers.conv import Conv2Plus1D
from jvdm.models.layers.dense import dense
from jvdm.models.layers.norms import frame_group_norm


class ResBlock(nn.Module):
  """GroupNorm, swish, (2+1)D conv, + time, GroupNorm, swish, dropout, (2+1)D conv, + skip.

  The DDPM residual block (Ho et al. 2020) with (2+1)D convs (Video Diffusion Models,
  Ho et al. 2022). The time embedding is per frame (FVDM): frame t's embedding is added to
  frame t's features only, broadcast over H and W.

  Attributes:
    features: output channels; a 1x1 projection maps the skip path when they change.
    num_groups: GroupNorm groups.
    dropout: dropout rate before the second conv (active only when `train=True`).
    identity_init_temporal: start the temporal convs at zero (see `Conv2Plus1D`).
  """

  features: int
  num_groups: int
  dropout: float = 0.0
  identity_init_temporal: bool = False
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(
    self, x: jnp.ndarray, time_embedding: jnp.ndarray, train: bool = False
  ) -> jnp.ndarray:
    """Applies the block.

    Args:
      x: `[B, T, H, W, C]` features.
      time_embedding: `[B, T, E]`, one embedding per frame.
      train: enables dropout (needs a "dropout" rng when `dropout > 0`).

    Returns:
      `[B, T, H, W, features]`.
    """
    kwargs = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    conv_kwargs = dict(identity_init_temporal=self.identity_init_temporal, **kwargs)
    h = frame_group_norm(self.num_groups, name="norm_0", **kwargs)(x)
    h = nn.swish(h)
    h = Conv2Plus1D(self.features, name="conv_0", **conv_kwargs)(h)

    time_shift = dense(self.features, name="time", **kwargs)(nn.swish(time_embedding))
    h = h + time_shift[:, :, None, None, :]  # [B, T, 1, 1, C]: per frame, over H and W

    h = frame_group_norm(self.num_groups, name="norm_1", **kwargs)(h)
    h = nn.swish(h)
    h = nn.Dropout(self.dropout, deterministic=not train)(h)
    h = Conv2Plus1D(self.features, name="conv_1", **conv_kwargs)(h)

    if x.shape[-1] != self.features:
      x = dense(self.features, name="skip", **kwargs)(x)  # 1x1 projection
    return x + h
