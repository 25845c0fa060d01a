"""Per-frame GroupNorm for `[B, T, H, W, C]` videos."""

import flax.linen as nn
import jax.numpy as jnp

from jvdm.parallel.axes import NORM


def frame_group_norm(
  num_groups: int, *, dtype: jnp.dtype, param_dtype: jnp.dtype, name: str | None = None
) -> nn.GroupNorm:
  """GroupNorm whose statistics are taken over (H, W, channels in group) of each frame.

  Per-frame statistics keep frames independent: with per-frame timesteps (FVDM) a clean
  frame's statistics would otherwise be mixed with a noisy one's, and outputs would depend
  on how many frames are in the clip. Only temporal convs and temporal attention mix frames.
  Statistics are reduced in float32 whatever `dtype` is.
  """
  return nn.GroupNorm(
    num_groups=num_groups,
    reduction_axes=(-3, -2, -1),  # H, W, C of a [B, T, H, W, C] input
    dtype=dtype,
    param_dtype=param_dtype,
    scale_init=nn.with_logical_partitioning(nn.initializers.ones_init(), (NORM,)),
    bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), (NORM,)),
    name=name,
  )
