"""Multi-head self-attention over the axes of a `[B, T, H, W, C]` video.

Factorized space-time attention (Video Diffusion Models, Ho et al. 2022; TimeSformer,
Bertasius et al. 2021): spatial attention mixes the H * W pixels of each frame, temporal
attention mixes the T frames of each pixel. Joint attention mixes all T * H * W tokens of a
video (TimeSformer's "joint space-time"; CogVideoX, Yang et al. 2024), which lets a moving
object's features meet across frames wherever it is; it is affordable at coarse resolutions.
All call `jax.nn.dot_product_attention`, which dispatches to cuDNN on GPU when asked and to
XLA otherwise.
"""

from typing import Literal

import einops
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jvdm.errors import ConfigError
from jvdm.models.layers.long_attention import LongAttention, window_fused_attention
from jvdm.ops.freelong import band_mask, spectral_blend
from jvdm.models.layers.norms import frame_group_norm
from jvdm.models.layers.rope import apply_rope, video_rope
from jvdm.parallel.axes import EMBED, HEAD_DIM, QKV_HEADS

AXES = ("spatial", "temporal", "joint")


class VideoSelfAttention(nn.Module):
  """Pre-norm residual self-attention block: `x + out(attention(qkv(norm(x))))`.

  The output projection is zero-initialized, so an untrained block is the identity
  (Video LDM, Blattmann et al. 2023). Temporal and joint attention rotate queries and keys by
  frame index (RoPE), so they know frame order, depend only on frame offsets, and take any
  number of frames at apply time.

  Attributes:
    axis: "spatial" (tokens: H * W pixels of one frame), "temporal" (tokens: T frames of one
      pixel) or "joint" (tokens: all T * H * W positions of one video).
    head_dim: channels per head; the number of heads is `channels // head_dim`.
    num_groups: GroupNorm groups of the pre-norm.
    attention_implementation: passed to `jax.nn.dot_product_attention`: None (XLA, any
      backend), "xla" or "cudnn".
    causal: temporal and joint attention are frame-causal: a frame attends to itself and
      earlier frames only (ViD-GPT, Gao et al. 2024). Spatial attention is within a frame.
    long_attention: temporal and joint attention over more than `long_attention.window`
      frames use FreeNoise's window fusion or FreeLong's SpectralBlend (`long_attention.py`).
    space_time_rope: spatial and joint attention also rotate queries and keys by row and
      column (`rope.video_rope`: the head dimension split into frame, row and column parts), so
      their logits depend on the offset in space (and time) between two tokens; False: spatial
      attention has no positions and joint attention knows only frame offsets.
  """

  axis: Literal["spatial", "temporal", "joint"]
  head_dim: int
  num_groups: int
  attention_implementation: str | None = None
  causal: bool = False
  long_attention: LongAttention | None = None
  space_time_rope: bool = False
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  def _rotation(self, height: int, width: int):
    """The position embedding of this axis: `rotate(a [B, F, H * W, N, D], frames [F])`, or
    None for spatial attention without `space_time_rope`."""
    if self.space_time_rope and self.axis != "temporal":
      rows = jnp.repeat(jnp.arange(height), width)
      cols = jnp.tile(jnp.arange(width), height)
      # Spatial attention mixes one frame only: every token at frame 0.
      return lambda a, frames: video_rope(
          a, frames if self.axis == "joint" else jnp.zeros_like(frames), rows, cols)
    if self.axis == "spatial":
      return None
    # By frame index only, over the whole head dimension.
    return lambda a, frames: apply_rope(a.reshape(a.shape[:2] + (-1, a.shape[-1])),
                                        frames).reshape(a.shape)

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    """`[B, T, H, W, C]` -> `[B, T, H, W, C]`."""
    batch, num_frames, height, width, channels = x.shape
    if self.axis not in AXES:
      raise ConfigError(f"attention axis must be one of {AXES}, got {self.axis!r}")
    if channels % self.head_dim:
      raise ConfigError(
          f"attention over {channels} channels needs channels divisible by head_dim, "
          f"got head_dim={self.head_dim}"
      )
    num_heads = channels // self.head_dim

    h = frame_group_norm(
        self.num_groups, dtype=self.dtype, param_dtype=self.param_dtype, name="norm"
    )(x)
    # Raw params rather than nn.DenseGeneral: DenseGeneral initializes a flattened 2D kernel,
    # which cannot carry 4 logical axis names.
    qkv_kernel = self.param(
        "qkv_kernel",
        nn.with_logical_partitioning(
            nn.initializers.lecun_normal(in_axis=0, out_axis=(1, 2, 3)),
            (EMBED, None, QKV_HEADS, HEAD_DIM),
        ),
        (channels, 3, num_heads, self.head_dim),
        self.param_dtype,
    )
    qkv_bias = self.param(
        "qkv_bias",
        nn.with_logical_partitioning(nn.initializers.zeros_init(), (None, QKV_HEADS, HEAD_DIM)),
        (3, num_heads, self.head_dim),
        self.param_dtype,
    )
    h, qkv_kernel, qkv_bias = nn.dtypes.promote_dtype(h, qkv_kernel, qkv_bias, dtype=self.dtype)
    qkv = jnp.einsum("bthwc,cknd->bthwknd", h, qkv_kernel) + qkv_bias  # [B, T, H, W, 3, N, D]
    query, key, value = (qkv[..., i, :, :] for i in range(3))  # each [B, T, H, W, N, D]

    long = self.long_attention
    if self.axis == "spatial" or long is None or not long.applies(num_frames):
      long = None
    if long is not None and long.method == "freenoise":
      # FreeNoise (sec. 3.3): attention within overlapping windows of frames, fused per frame.
      out = window_fused_attention(
          *(a.reshape(batch, num_frames, height * width, num_heads, self.head_dim)
            for a in (query, key, value)),
          long.window, long.stride, long.weighting, per_position=self.axis == "temporal",
          frame_mask=np.tril(np.ones((long.window,) * 2, bool)) if self.causal else None,
          rotate=self._rotation(height, width),
          implementation=self.attention_implementation)
      out = out.reshape(query.shape)
    else:
      out = self._attention(query, key, value, long)

    out_kernel = self.param(
        "out_kernel",
        # Zero init: the block starts as the identity.
        nn.with_logical_partitioning(nn.initializers.zeros_init(), (QKV_HEADS, HEAD_DIM, EMBED)),
        (num_heads, self.head_dim, channels),
        self.param_dtype,
    )
    out_bias = self.param(
        "out_bias",
        nn.with_logical_partitioning(nn.initializers.zeros_init(), (EMBED,)),
        (channels,),
        self.param_dtype,
    )
    out, out_kernel, out_bias = nn.dtypes.promote_dtype(out, out_kernel, out_bias, dtype=self.dtype)
    out = jnp.einsum("bthwnd,ndc->bthwc", out, out_kernel) + out_bias  # [B, T, H, W, C]
    return x + out

  def _attention(self, query, key, value, long):
    """q/k/v `[B, T, H, W, N, D]` -> `[B, T, H, W, N, D]` along `self.axis`; with FreeLong
    (`long`), the SpectralBlend of global and local (`band_mask`) attention (sec. 3.2)."""
    batch, num_frames, height, width, num_heads, head_dim = query.shape
    rotate = self._rotation(height, width)
    if rotate is not None:
      tokens = (batch, num_frames, height * width, num_heads, head_dim)
      query, key = (rotate(a.reshape(tokens), jnp.arange(num_frames)).reshape(query.shape)
                    for a in (query, key))
    # Each axis is a rearrange of [B, T, H, W, N, D] into attention's [batch, tokens, heads, D]
    # (a reshape, never a transpose), and the frame index of every token for the causal mask.
    if self.axis == "spatial":
      # Frames become the batch, pixels the sequence.
      pattern = "b t h w n d -> (b t) (h w) n d"
      frame_index = None
    elif self.axis == "temporal":
      # Frames are the sequence; each (pixel, head) pair is its own attention head.
      pattern = "b t h w n d -> b t (h w n) d"
      frame_index = jnp.arange(num_frames)
    else:
      # Every (frame, pixel) is a token; positions in space come from the convs' features
      # (and from space_time_rope).
      pattern = "b t h w n d -> b (t h w) n d"
      frame_index = jnp.repeat(jnp.arange(num_frames), height * width)
    query, key, value = (einops.rearrange(a, pattern) for a in (query, key, value))

    mask = None
    if self.causal and frame_index is not None:
      mask = frame_index[:, None] >= frame_index[None, :]  # [Lq, Lk]
    source, target = pattern.split(" -> ")

    def attend(mask):
      out = jax.nn.dot_product_attention(
          query, key, value, mask=None if mask is None else mask[None, None],
          implementation=self.attention_implementation)
      return einops.rearrange(out, f"{target} -> {source}", b=batch, h=height, w=width)

    out = attend(mask)
    if long is not None:
      tokens_per_frame = 1 if self.axis == "temporal" else height * width
      band = band_mask(num_frames, long.window, tokens_per_frame, long.local_mask)
      local = attend(band if mask is None else mask & band)
      out = spectral_blend(*(a.reshape(batch, num_frames, height, width, num_heads * head_dim)
                             for a in (out, local)),
                           long.temporal_cutoff, long.spatial_cutoff,
                           long.low_pass).reshape(out.shape)
    return out
