"""Wan 2.1's video VAE ("Wan-VAE", Wan Team 2025, "Wan: Open and Advanced Large-Scale Video
Generative Models") as diffusers' `AutoencoderKLWan` computes it, number for number, on
`[B, T, H, W, C]` videos.

A causal 3D VAE that compresses `1 + 4k` frames of `H x W` to `1 + k` latent frames of
`H/8 x W/8` (with Wan 2.1's `dim_mult=(1, 2, 4, 4)`, `temporal_downsample=(False, True, True)`).
It is not a configuration of `jvdm.models.vae.autoencoder.VideoAutoencoder`, whose layers differ
where Wan's numbers depend on them:
- the stride-2 time conv passes frame 0 through unchanged (jvdm's convolves it with zeros);
- the time upsampler passes latent frame 0 through and its conv never sees that frame (its
  causal past starts with zeros after frame 0);
- the stride-2 spatial conv pads one zero row and column on the bottom and right only;
- the RMS norm is `x / max(|x|, 1e-12) * sqrt(C) * gamma` (F.normalize), with no epsilon inside
  the root;
- the middle attention is single-head, after an RMS norm.
Every time conv is a `CausalConv3d`, so the VAE encodes and decodes chunk by chunk through the
"cache" collection (`jvdm.models.vae.chunked`), as diffusers' `_encode` (frame 0, then 4 frames
at a time) and `_decode` (one latent frame at a time) do, and a whole-video pass gives the same
numbers.

Submodule names are diffusers' module names with list indices joined by "_"
(`encoder.down_blocks.1.resample.1` -> `encoder/down_blocks_1/resample_1`), so a checkpoint key
maps by rule (`jvdm.pretrained.wan_vae`).
"""

import flax.linen as nn
import jax.numpy as jnp
from jax import lax

from jvdm.errors import ShapeError
from jvdm.models.vae.input_checks import check_causal_frames, check_encoder_input
from jvdm.models.layers.attention import video_attention
from jvdm.models.layers.conv import SpatialConv
from jvdm.models.layers.dense import dense
from jvdm.models.vae.causal_conv import CausalConv3d
from jvdm.parallel.axes import CONV_HEIGHT, CONV_WIDTH, EMBED, MLP, NORM

_LOGVAR_RANGE = (-30.0, 20.0)  # as diffusers' DiagonalGaussianDistribution clamps logvar


class WanRMSNorm(nn.Module):
  """`x / max(|x|_2, 1e-12) * sqrt(C) * scale` over the channels of each position (diffusers'
  `WanRMS_norm`, without bias as Wan 2.1 uses it); normalized in float32."""

  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    channels = x.shape[-1]
    scale = self.param(
      "scale",
      nn.with_logical_partitioning(nn.initializers.ones_init(), (NORM,)),
      (channels,),
      self.param_dtype,
    )
    x32 = x.astype(jnp.float32)
    norm = jnp.sqrt(jnp.sum(jnp.square(x32), axis=-1, keepdims=True))
    normalized = (x32 / jnp.maximum(norm, 1e-12)).astype(self.dtype)
    return normalized * channels**0.5 * scale.astype(self.dtype)


class WanResidualBlock(nn.Module):
  """norm, SiLU, 3x3x3 causal conv, norm, SiLU, 3x3x3 causal conv, plus a 1x1x1 conv skip when
  the width changes (diffusers' `WanResidualBlock`; dropout is a training option, absent)."""

  features: int
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, first_chunk: bool = True) -> jnp.ndarray:
    kwargs = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    skip = x
    if x.shape[-1] != self.features:
      skip = CausalConv3d(self.features, (1, 1, 1), name="conv_shortcut", **kwargs)(x)
    h = nn.silu(WanRMSNorm(name="norm1", **kwargs)(x))
    h = CausalConv3d(self.features, name="conv1", **kwargs)(h, first_chunk)
    h = nn.silu(WanRMSNorm(name="norm2", **kwargs)(h))
    h = CausalConv3d(self.features, name="conv2", **kwargs)(h, first_chunk)
    return h + skip


class WanAttentionBlock(nn.Module):
  """Single-head self-attention over the pixels of each frame, after an RMS norm, with 1x1
  projections and a residual (diffusers' `WanAttentionBlock`)."""

  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    batch, frames, height, width, channels = x.shape
    kwargs = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    h = WanRMSNorm(name="norm", **kwargs)(x)
    qkv = dense(3 * channels, name="to_qkv", **kwargs)(h)
    tokens = qkv.reshape(batch, frames, height * width, 1, 3 * channels)  # [B, F, P, 1, 3C]
    query, key, value = jnp.split(tokens, 3, axis=-1)
    out, _ = video_attention(
      query, key, value, layout="spatial", frames=jnp.arange(frames), grid=(height, width)
    )
    out = dense(channels, name="proj", **kwargs)(out.reshape(x.shape))
    return x + out


class WanMidBlock(nn.Module):
  """Residual block, attention, residual block (diffusers' `WanMidBlock`, one layer)."""

  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, first_chunk: bool = True) -> jnp.ndarray:
    kwargs = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    x = WanResidualBlock(x.shape[-1], name="resnets_0", **kwargs)(x, first_chunk)
    x = WanAttentionBlock(name="attentions_0", **kwargs)(x)
    return WanResidualBlock(x.shape[-1], name="resnets_1", **kwargs)(x, first_chunk)


class WanStridedConv(nn.Module):
  """A stride-2 3x3 conv on each frame after one zero row and column on the bottom and right
  (diffusers' `ZeroPad2d((0, 1, 0, 1))` then `Conv2d(stride=2)`): `[B, T, H, W, C]` ->
  `[B, T, H/2, W/2, C]`."""

  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    batch, frames, _, _, channels = x.shape
    kernel = self.param(
      "kernel",
      nn.with_logical_partitioning(
        nn.initializers.lecun_normal(), (CONV_HEIGHT, CONV_WIDTH, EMBED, MLP)
      ),
      (3, 3, channels, channels),
      self.param_dtype,
    )
    bias = self.param(
      "bias",
      nn.with_logical_partitioning(nn.initializers.zeros_init(), (MLP,)),
      (channels,),
      self.param_dtype,
    )
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    images = lax.conv_general_dilated(
      x.reshape((batch * frames,) + x.shape[2:]),
      kernel,
      (2, 2),
      ((0, 1), (0, 1)),
      dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )
    return (images + bias).reshape((batch, frames) + images.shape[1:])


class WanDownsample(nn.Module):
  """Halves H and W (`WanStridedConv`); with `temporal`, then halves time after frame 0 with a
  stride-2 3x1x1 causal conv that passes frame 0 through (diffusers' `WanResample`
  "downsample2d"/"downsample3d").

  Output frame j >= 1 convolves input frames 2j - 2, 2j - 1, 2j, so `1 + 2k` frames give
  `1 + k`; a later chunk (an even number of frames) convolves with the last frame before it.
  """

  temporal: bool
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, first_chunk: bool = True) -> jnp.ndarray:
    kwargs = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    x = WanStridedConv(name="resample_1", **kwargs)(x)
    if not self.temporal:
      return x
    out = CausalConv3d(x.shape[-1], (3, 1, 1), temporal_stride=2, name="time_conv", **kwargs)(
      x, first_chunk
    )
    # CausalConv3d's first output convolves frame 0 with two zero frames; Wan keeps frame 0.
    return out.at[:, 0].set(x[:, 0]) if first_chunk else out


class WanUpsample(nn.Module):
  """With `temporal`, doubles the frame rate after frame 0: a 3x1x1 causal conv to 2C channels,
  read as two frames of C (depth to time); then doubles H and W (nearest) and a 3x3 conv to
  `features` (diffusers' `WanResample` "upsample3d"/"upsample2d").

  Frame 0 passes the time step unchanged, and the time conv's causal past starts at frame 1
  with zeros before it (diffusers' "Rep" first chunk), so `1 + k` frames give `1 + 2k`.
  """

  features: int
  temporal: bool
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, first_chunk: bool = True) -> jnp.ndarray:
    kwargs = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    if self.temporal:
      batch, frames, height, width, channels = x.shape
      # Frame 0 as a zero frame: the conv's outputs from frame 1 on then see zeros before it.
      conv_input = x.at[:, 0].set(0) if first_chunk else x
      h = CausalConv3d(2 * channels, (3, 1, 1), name="time_conv", **kwargs)(conv_input, first_chunk)
      h = h.reshape(batch, frames, height, width, 2, channels).transpose(0, 1, 4, 2, 3, 5)
      h = h.reshape(batch, 2 * frames, height, width, channels)
      x = jnp.concatenate([x[:, :1].astype(h.dtype), h[:, 2:]], axis=1) if first_chunk else h
    x = jnp.repeat(jnp.repeat(x, 2, axis=2), 2, axis=3)
    return SpatialConv(self.features, name="resample_1", **kwargs)(x)


class WanEncoder(nn.Module):
  """`[B, T, H, W, in]` -> `[B, t, h, w, 2 z_dim]` (diffusers' `WanEncoder3d`, Wan 2.1's
  non-residual layout without attention in the levels)."""

  base_dim: int
  out_channels: int
  dim_mult: tuple[int, ...]
  num_res_blocks: int
  temporal_downsample: tuple[bool, ...]
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, first_chunk: bool = True) -> jnp.ndarray:
    kwargs = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    x = CausalConv3d(self.base_dim, name="conv_in", **kwargs)(x, first_chunk)
    index = 0
    for level, mult in enumerate(self.dim_mult):
      for _ in range(self.num_res_blocks):
        x = WanResidualBlock(self.base_dim * mult, name=f"down_blocks_{index}", **kwargs)(
          x, first_chunk
        )
        index += 1
      if level < len(self.dim_mult) - 1:
        x = WanDownsample(self.temporal_downsample[level], name=f"down_blocks_{index}", **kwargs)(
          x, first_chunk
        )
        index += 1
    x = WanMidBlock(name="mid_block", **kwargs)(x, first_chunk)
    x = nn.silu(WanRMSNorm(name="norm_out", **kwargs)(x))
    return CausalConv3d(self.out_channels, name="conv_out", **kwargs)(x, first_chunk)


class WanUpBlock(nn.Module):
  """`num_res_blocks + 1` residual blocks, then an upsampler to half the width unless
  `upsample` is None (diffusers' `WanUpBlock`)."""

  features: int
  num_res_blocks: int
  # None (the last level), "spatial" or "spatiotemporal".
  upsample: str | None
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, first_chunk: bool = True) -> jnp.ndarray:
    kwargs = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    for i in range(self.num_res_blocks + 1):
      x = WanResidualBlock(self.features, name=f"resnets_{i}", **kwargs)(x, first_chunk)
    if self.upsample is None:
      return x
    temporal = self.upsample == "spatiotemporal"
    return WanUpsample(self.features // 2, temporal, name="upsamplers_0", **kwargs)(x, first_chunk)


class WanDecoder(nn.Module):
  """`[B, t, h, w, z_dim]` -> `[B, T, H, W, out]` (diffusers' `WanDecoder3d`, Wan 2.1's
  non-residual layout)."""

  base_dim: int
  out_channels: int
  dim_mult: tuple[int, ...]
  num_res_blocks: int
  temporal_upsample: tuple[bool, ...]
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, z: jnp.ndarray, first_chunk: bool = True) -> jnp.ndarray:
    kwargs = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    widths = [self.base_dim * m for m in self.dim_mult[::-1]]
    x = CausalConv3d(widths[0], name="conv_in", **kwargs)(z, first_chunk)
    x = WanMidBlock(name="mid_block", **kwargs)(x, first_chunk)
    for level, width in enumerate(widths):
      upsample = None
      if level < len(widths) - 1:
        upsample = "spatiotemporal" if self.temporal_upsample[level] else "spatial"
      x = WanUpBlock(width, self.num_res_blocks, upsample, name=f"up_blocks_{level}", **kwargs)(
        x, first_chunk
      )
    x = nn.silu(WanRMSNorm(name="norm_out", **kwargs)(x))
    return CausalConv3d(self.out_channels, name="conv_out", **kwargs)(x, first_chunk)


class WanVAE(nn.Module):
  """Wan 2.1's VAE: `[B, T, H, W, in_channels]` pixels in [-1, 1] <-> `[B, t, h, w, z_dim]`.

  Attributes (diffusers' config names in brackets):
    base_dim: encoder width of level 0 [base_dim].
    decoder_base_dim: the decoder's, when it differs [decoder_base_dim].
    z_dim: latent channels [z_dim].
    dim_mult: width multipliers of the levels; every level transition halves H and W
      [dim_mult].
    num_res_blocks: encoder residual blocks per level (the decoder has one more)
      [num_res_blocks].
    temporal_downsample: per level transition, whether the encoder halves time there (the
      decoder mirrors it) [temperal_downsample].
  """

  base_dim: int = 96
  decoder_base_dim: int | None = None
  z_dim: int = 16
  dim_mult: tuple[int, ...] = (1, 2, 4, 4)
  num_res_blocks: int = 2
  temporal_downsample: tuple[bool, ...] = (False, True, True)
  in_channels: int = 3
  out_channels: int = 3
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  causal = True  # for `jvdm.models.vae.chunked`: encodes and decodes through the conv cache

  def setup(self):
    kwargs = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    self.encoder = WanEncoder(
      self.base_dim,
      2 * self.z_dim,
      tuple(self.dim_mult),
      self.num_res_blocks,
      tuple(self.temporal_downsample),
      **kwargs,
    )
    self.quant_conv = CausalConv3d(2 * self.z_dim, (1, 1, 1), **kwargs)
    self.post_quant_conv = CausalConv3d(self.z_dim, (1, 1, 1), **kwargs)
    self.decoder = WanDecoder(
      self.decoder_base_dim or self.base_dim,
      self.out_channels,
      tuple(self.dim_mult),
      self.num_res_blocks,
      tuple(self.temporal_downsample[::-1]),
      **kwargs,
    )

  @property
  def spatial_compression(self) -> int:
    return 2 ** (len(self.dim_mult) - 1)

  @property
  def temporal_compression(self) -> int:
    return 2 ** sum(self.temporal_downsample)

  def check_num_frames(self, num_frames: int, what: str = "video") -> None:
    """Raises ShapeError unless `num_frames` is 1 + temporal_compression * k."""
    check_causal_frames(num_frames, self.temporal_compression, what)

  def encode(self, x: jnp.ndarray, first_chunk: bool = True) -> tuple[jnp.ndarray, jnp.ndarray]:
    """`[B, T, H, W, in_channels]` -> float32 posterior `(mean, logvar)`, each
    `[B, t, h, w, z_dim]`, logvar clipped to [-30, 20] as diffusers does.

    In chunked mode (`mutable=["cache"]`) the first chunk holds frame 0 alone, later ones a
    multiple of `temporal_compression` frames with `first_chunk=False`.
    """
    check_encoder_input(
      x.shape, first_chunk, self.temporal_compression, self.spatial_compression, self.in_channels
    )
    moments = self.quant_conv(self.encoder(x, first_chunk)).astype(jnp.float32)
    mean, logvar = jnp.split(moments, 2, axis=-1)
    return mean, jnp.clip(logvar, *_LOGVAR_RANGE)

  def decode(self, z: jnp.ndarray, first_chunk: bool = True) -> jnp.ndarray:
    """`[B, t, h, w, z_dim]` -> float32 `[B, T, H, W, out_channels]` pixels, clipped to
    [-1, 1] as diffusers does.

    In chunked mode the first chunk starts at latent frame 0 (`first_chunk=True`); diffusers
    decodes one latent frame per chunk.
    """
    if z.ndim != 5 or z.shape[-1] != self.z_dim:
      raise ShapeError(
        f"Wan's VAE decodes latents [B, t, h, w, {self.z_dim}], got shape {z.shape}."
      )
    x = self.decoder(self.post_quant_conv(z), first_chunk)
    return jnp.clip(x.astype(jnp.float32), -1.0, 1.0)

  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    """Reconstructs x through the posterior mean (to initialize params)."""
    return self.decode(self.encode(x)[0])
