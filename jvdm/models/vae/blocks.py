"""The blocks of the video autoencoders (`jvdm.models.vae.autoencoder`): the norm choice, the
residual block (causal 3D or per-frame convs) and the temporal residual block of the temporal
decoder, blended with a learned factor (SVD's AlphaBlender)."""

import flax.linen as nn
import jax.numpy as jnp

from jvdm.models.layers.dense import dense
from jvdm.models.layers.norms import frame_group_norm
from jvdm.models.vae.causal_conv import CausalConv3d

NORMS = ("rms", "group")


def make_norm(norm: str, num_groups: int, name: str, **kwargs) -> nn.Module:
  """ "rms": RMSNorm over the channels of each position (Wan 2.1's VAE), which sees no other
  pixel or frame, so chunks and spatial tiles of the convs' receptive field decode exactly.
  "group": GroupNorm with per-frame statistics over the whole frame (the LDM and SVD VAEs);
  spatial tiles then differ from whole frames wherever the statistics do."""
  if norm == "rms":
    return nn.RMSNorm(epsilon=1e-6, name=name, **kwargs)
  return frame_group_norm(num_groups, name=name, **kwargs)


class VAEResBlock(nn.Module):
  """norm, swish, conv, norm, swish, conv, + skip; convs `kt x 3 x 3` (per frame if kt = 1)."""

  features: int
  num_groups: int
  temporal_kernel: int = 3
  causal: bool = True
  norm: str = "rms"
  row_slices: int = 1
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, first_chunk: bool = True) -> jnp.ndarray:
    kwargs = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    conv = lambda name: CausalConv3d(
      self.features,
      (self.temporal_kernel, 3, 3),
      causal=self.causal,
      row_slices=self.row_slices,
      name=name,
      **kwargs,
    )
    h = nn.swish(make_norm(self.norm, self.num_groups, "norm_0", **kwargs)(x))
    h = conv("conv_0")(h, first_chunk)
    h = nn.swish(make_norm(self.norm, self.num_groups, "norm_1", **kwargs)(h))
    h = conv("conv_1")(h, first_chunk)
    if x.shape[-1] != self.features:
      x = dense(self.features, name="skip", **kwargs)(x)
    return x + h


class TemporalMix(nn.Module):
  """SVD's temporal block: `alpha * x + (1 - alpha) * temporal_resblock(x)`, alpha =
  sigmoid(learned factor, initially 0), with centred (non-causal) 3x1x1 convs."""

  num_groups: int
  norm: str = "rms"
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    kwargs = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    h = nn.swish(make_norm(self.norm, self.num_groups, "norm_0", **kwargs)(x))
    h = CausalConv3d(x.shape[-1], (3, 1, 1), causal=False, name="conv_0", **kwargs)(h)
    h = nn.swish(make_norm(self.norm, self.num_groups, "norm_1", **kwargs)(h))
    h = x + CausalConv3d(x.shape[-1], (3, 1, 1), causal=False, name="conv_1", **kwargs)(h)
    alpha = nn.sigmoid(self.param("mix_factor", nn.initializers.zeros_init(), ()))
    return alpha * x + (1 - alpha) * h
