"""Video autoencoders (KL-regularized) that compress `[B, T, H, W, 3]` videos for latent diffusion.

Two architectures share one module:
- "causal_3d": a causal 3D VAE (CV-VAE, Zhao et al. 2024; Wan 2.1, 2025). Every conv is a
  `CausalConv3d`, and time is halved by stride-2 causal convs that keep frame 0 alone, so a
  video of `1 + c k` frames has `1 + k` latent frames (c = temporal compression), the first of
  which is the latent of frame 0 as an image. It can encode and decode in chunks of frames,
  carrying each conv's past frames (`jvdm.models.vae.chunked`), exactly.
- "temporal_decoder": an image VAE with a temporal decoder (Video LDM, Blattmann et al. 2023,
  Sec. 3.1.1; Stable Video Diffusion's `TemporalDecoder`). The encoder is per frame (no
  temporal compression); the decoder follows each per-frame residual block with a temporal
  residual block (3x1x1 convs, centred in time) blended by a learned factor
  `alpha * spatial + (1 - alpha) * temporal` (SVD's AlphaBlender), to remove flicker.

The encoder returns the diagonal Gaussian posterior `(mean, logvar)` over latents
(Kingma & Welling 2014; the LDM autoencoder, Rombach et al. 2022).
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from jvdm.errors import ConfigError, ShapeError
from jvdm.models.vae.input_checks import check_causal_frames, check_encoder_input
from jvdm.models.layers.attention import VideoSelfAttention
from jvdm.models.layers.conv import SpatialConv
from jvdm.ops.gaussian import sample_posterior
from jvdm.models.vae.blocks import NORMS, TemporalMix, VAEResBlock, make_norm
from jvdm.models.vae.causal_conv import CausalConv3d

ARCHITECTURES = ("causal_3d", "temporal_decoder")
_LOGVAR_RANGE = (-30.0, 20.0)  # clipped as in the LDM autoencoder, for a stable KL


class VideoAutoencoder(nn.Module):
  """`[B, T, H, W, 3]` pixels in [-1, 1] <-> `[B, t, H / s, W / s, latent_channels]` latents.

  Attributes:
    architecture: "causal_3d" or "temporal_decoder" (see the module docstring).
    latent_channels: channels of the latent.
    base_channels: width of level 0; level i has `base_channels * channel_mults[i]`.
    channel_mults: one per level.
    spatial_downsample: for each of the `len(channel_mults) - 1` level transitions, whether
      H and W halve there; the spatial compression is 2 ** (number of True).
    temporal_downsample: likewise for time (causal_3d only): 2 ** (number of True).
    num_res_blocks: residual blocks per level (the decoder has one more, as in the LDM VAE).
    norm: "rms" (per position, Wan 2.1) or "group" (per-frame GroupNorm, LDM/SVD); see
      `make_norm`.
    num_groups: GroupNorm groups (norm="group", and the middle attention's pre-norm).
    middle_attention: a per-frame spatial self-attention block between the middle res blocks
      (it sees the whole frame, so spatial tiles are then approximate).
    head_dim: channels per head of that attention.
    out_channels: channels of the decoded video.
    decoder_row_slices: a sampling-time option (params unchanged): the decoder's 3x3 convs run
      in this many bands of rows one after another (`CausalConv3d.row_slices`), so a conv's
      temporaries are those of one band; it must divide the height at every decoder level.
  """

  architecture: str = "causal_3d"
  latent_channels: int = 16
  base_channels: int = 64
  channel_mults: tuple[int, ...] = (1, 2, 4, 4)
  spatial_downsample: tuple[bool, ...] = (True, True, True)
  temporal_downsample: tuple[bool, ...] = (False, True, True)
  num_res_blocks: int = 2
  norm: str = "rms"
  num_groups: int = 32
  middle_attention: bool = True
  head_dim: int = 64
  out_channels: int = 3
  decoder_row_slices: int = 1
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  def __post_init__(self):
    super().__post_init__()
    if self.architecture not in ARCHITECTURES:
      raise ConfigError(
        f"vae.architecture must be one of {ARCHITECTURES}, got {self.architecture!r}."
      )
    if self.norm not in NORMS:
      raise ConfigError(f"vae.norm must be one of {NORMS}, got {self.norm!r}.")
    transitions = len(self.channel_mults) - 1
    for name in ("spatial_downsample", "temporal_downsample"):
      if len(getattr(self, name)) != transitions:
        raise ConfigError(
          f"vae.{name}={getattr(self, name)} needs one entry per level "
          f"transition: {transitions} for channel_mults {self.channel_mults}."
        )
    if self.architecture == "temporal_decoder" and any(self.temporal_downsample):
      raise ConfigError(
        "The temporal_decoder VAE encodes frame by frame: vae.temporal_downsample "
        f"must be all False, got {self.temporal_downsample}."
      )
    for width in [self.base_channels * m for m in self.channel_mults]:
      if width % self.num_groups:
        raise ConfigError(
          f"vae.num_groups={self.num_groups} must divide every level's width; "
          f"{width} is not divisible."
        )
    if self.middle_attention and (self.base_channels * self.channel_mults[-1]) % self.head_dim:
      raise ConfigError(
        f"vae.head_dim={self.head_dim} must divide the middle width "
        f"{self.base_channels * self.channel_mults[-1]}."
      )

  @property
  def causal(self) -> bool:
    return self.architecture == "causal_3d"

  @property
  def spatial_compression(self) -> int:
    return 2 ** sum(self.spatial_downsample)

  @property
  def temporal_compression(self) -> int:
    return 2 ** sum(self.temporal_downsample)

  def check_num_frames(self, num_frames: int, what: str = "video") -> None:
    """Raises ShapeError unless `num_frames` is 1 + temporal_compression * k."""
    check_causal_frames(num_frames, self.temporal_compression, what)

  def latent_shape(self, video_shape: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """`(T, H, W, C)` of a video -> `(t, h, w, latent_channels)` of its latent."""
    num_frames, height, width = video_shape[:3]
    self.check_num_frames(num_frames)
    s = self.spatial_compression
    if height % s or width % s:
      raise ShapeError(
        f"Frames of {height}x{width} do not divide by this VAE's spatial compression {s}."
      )
    return (
      1 + (num_frames - 1) // self.temporal_compression,
      height // s,
      width // s,
      self.latent_channels,
    )

  def video_frames(self, latent_frames: int) -> int:
    return 1 + (latent_frames - 1) * self.temporal_compression

  @property
  def encoder_receptive_radius(self) -> int:
    """Input pixels beyond its own block that a latent pixel's 3x3 convs see (as
    `decoder_receptive_radius`, in pixels)."""
    radius, downsampled = 1.0, 1  # conv_in
    for level in range(len(self.channel_mults)):
      radius += 2 * self.num_res_blocks * downsampled
      if level < len(self.channel_mults) - 1 and self.spatial_downsample[level]:
        radius += downsampled  # the stride-2 conv
        downsampled *= 2
    return math.ceil(radius + 5 * downsampled)  # the middle's two res blocks and conv_out

  @property
  def decoder_receptive_radius(self) -> int:
    """How many latent pixels beyond its own an output pixel of the decoder's convs sees (each
    3x3 conv adds one pixel at its resolution; GroupNorm and attention, which see the whole
    frame, are not counted). A spatial tile narrower than this cannot decode its centre as the
    whole frame would."""
    radius = 1 + 4  # conv_in and the two middle res blocks, at the latent resolution
    upsampled = 1
    for level in reversed(range(len(self.channel_mults))):
      radius += 2 * (self.num_res_blocks + 1) / upsampled
      if level > 0 and self.spatial_downsample[level - 1]:
        upsampled *= 2
        radius += 1 / upsampled  # the conv after the nearest upsampling
    return math.ceil(radius + 1 / upsampled)  # conv_out

  def _kwargs(self):
    return dict(dtype=self.dtype, param_dtype=self.param_dtype)

  def _res_block(self, features: int, name: str, row_slices: int = 1) -> VAEResBlock:
    temporal_kernel = 3 if self.causal else 1
    return VAEResBlock(
      features,
      self.num_groups,
      temporal_kernel,
      causal=True,
      norm=self.norm,
      row_slices=row_slices,
      name=name,
      **self._kwargs(),
    )

  def _middle(
    self, h: jnp.ndarray, first_chunk: bool, prefix: str, row_slices: int = 1
  ) -> jnp.ndarray:
    width = h.shape[-1]
    h = self._res_block(width, f"{prefix}_middle_res_0", row_slices)(h, first_chunk)
    if self.middle_attention:
      h = VideoSelfAttention(
        "spatial",
        self.head_dim,
        self.num_groups,
        name=f"{prefix}_middle_attention",
        **self._kwargs(),
      )(h)
    return self._res_block(width, f"{prefix}_middle_res_1", row_slices)(h, first_chunk)

  @nn.compact
  def encode(self, x: jnp.ndarray, first_chunk: bool = True) -> tuple[jnp.ndarray, jnp.ndarray]:
    """`[B, T, H, W, C]` pixels -> posterior `(mean, logvar)`, each `[B, t, h, w, latent]`.

    In chunked mode (`mutable=["cache"]`) the first chunk is frame 0 alone and later ones hold
    a multiple of `temporal_compression` frames, with `first_chunk=False`.
    """
    check_encoder_input(x.shape, first_chunk, self.temporal_compression, self.spatial_compression)
    kwargs = self._kwargs()
    kt = 3 if self.causal else 1
    h = CausalConv3d(self.base_channels, (kt, 3, 3), name="encoder_conv_in", **kwargs)(
      x, first_chunk
    )
    for level, mult in enumerate(self.channel_mults):
      for i in range(self.num_res_blocks):
        h = self._res_block(self.base_channels * mult, f"encoder_{level}_res_{i}")(h, first_chunk)
      if level < len(self.channel_mults) - 1:
        if self.spatial_downsample[level]:
          h = SpatialConv(h.shape[-1], strides=2, name=f"encoder_{level}_down", **kwargs)(h)
        if self.temporal_downsample[level]:
          h = CausalConv3d(
            h.shape[-1], (3, 1, 1), temporal_stride=2, name=f"encoder_{level}_time_down", **kwargs
          )(h, first_chunk)
    h = self._middle(h, first_chunk, "encoder")
    h = nn.swish(make_norm(self.norm, self.num_groups, "encoder_norm_out", **kwargs)(h))
    moments = CausalConv3d(2 * self.latent_channels, (kt, 3, 3), name="encoder_conv_out", **kwargs)(
      h, first_chunk
    ).astype(jnp.float32)
    mean, logvar = jnp.split(moments, 2, axis=-1)
    return mean, jnp.clip(logvar, *_LOGVAR_RANGE)

  @nn.compact
  def decode(self, z: jnp.ndarray, first_chunk: bool = True) -> jnp.ndarray:
    """`[B, t, h, w, latent]` -> float32 `[B, T, H, W, out_channels]` pixels.

    In chunked mode the first chunk is latent frame 0 alone (`first_chunk=True`).
    """
    if z.ndim != 5 or z.shape[-1] != self.latent_channels:
      raise ShapeError(
        f"VAE decode takes latents [B, t, h, w, {self.latent_channels}], got shape {z.shape}."
      )
    kwargs = self._kwargs()
    kt = 3 if self.causal else 1
    top = self.base_channels * self.channel_mults[-1]
    slices = self.decoder_row_slices
    h = CausalConv3d(top, (kt, 3, 3), row_slices=slices, name="decoder_conv_in", **kwargs)(
      z, first_chunk
    )
    h = self._middle(h, first_chunk, "decoder", slices)
    for level in reversed(range(len(self.channel_mults))):
      for i in range(self.num_res_blocks + 1):
        h = self._res_block(
          self.base_channels * self.channel_mults[level], f"decoder_{level}_res_{i}", slices
        )(h, first_chunk)
        if not self.causal:
          h = TemporalMix(
            self.num_groups, self.norm, name=f"decoder_{level}_temporal_{i}", **kwargs
          )(h)
      if level > 0:
        if self.temporal_downsample[level - 1]:
          h = self._time_upsample(h, first_chunk, f"decoder_{level}_time_up")
        if self.spatial_downsample[level - 1]:
          h = jnp.repeat(jnp.repeat(h, 2, axis=2), 2, axis=3)  # nearest
          h = SpatialConv(h.shape[-1], name=f"decoder_{level}_up", **kwargs)(h)
    h = nn.swish(make_norm(self.norm, self.num_groups, "decoder_norm_out", **kwargs)(h))
    return CausalConv3d(
      self.out_channels, (kt, 3, 3), row_slices=slices, name="decoder_conv_out", **kwargs
    )(h, first_chunk).astype(jnp.float32)

  def _time_upsample(self, h: jnp.ndarray, first_chunk: bool, name: str) -> jnp.ndarray:
    """Doubles the frame rate (depth to time) and, on frame 0, keeps one frame: `1 + k` -> `1 + 2k`
    frames, the inverse of the encoder's stride-2 conv (Wan 2.1's `Resample` upsample3d)."""
    batch, frames, height, width, channels = h.shape
    h = CausalConv3d(2 * channels, (3, 1, 1), name=name, **self._kwargs())(h, first_chunk)
    h = h.reshape(batch, frames, height, width, 2, channels).transpose(0, 1, 4, 2, 3, 5)
    h = h.reshape(batch, 2 * frames, height, width, channels)
    return h[:, 1:] if first_chunk else h

  def __call__(
    self, x: jnp.ndarray, noise_key: jax.Array | None = None
  ) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
    """Reconstructs x through a posterior sample (the mean when `noise_key` is None).

    Returns:
      (reconstruction `[B, T, H, W, C]`, mean, logvar).
    """
    mean, logvar = self.encode(x)
    z = mean if noise_key is None else sample_posterior(noise_key, mean, logvar)
    return self.decode(z), mean, logvar
