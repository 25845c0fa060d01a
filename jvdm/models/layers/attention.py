"""Attention over video tokens: the one op every backbone calls (`video_attention`), and the
UNet's self-attention block (`VideoSelfAttention`).

`video_attention` takes queries, keys and values `[B, F, P, N, D]` (F frames of P tokens, N
heads) and owns everything around the kernel:
  layouts   "spatial" (the P tokens of each frame; factorized space-time attention, Video
            Diffusion Models, Ho et al. 2022; TimeSformer, Bertasius et al. 2021), "temporal"
            (the F frames of each token position), "full" (all F * P tokens; TimeSformer's
            joint space-time, CogVideoX, Wan), "windowed" (full within a temporal window);
  masks     frame-causal (a token sees its own and earlier frames; ViD-GPT, Gao et al. 2024)
            and the temporal window;
  positions a `rotate(a [B, F', P, N, D], frames [F'])` callback (RoPE by frame, or 3D RoPE);
  KV cache  keys and values of earlier frames read before the chunk's own (Ca2-VDM);
  long      FreeNoise's window fusion or FreeLong's SpectralBlend for videos longer than the
            training clips (`jvdm.models.layers.long_attention`);
  kernels   `jvdm.parallel.context_attention.attention`: XLA or cuDNN, and context parallelism
            (all-to-all or ring) over the mesh's `context` axis.
"""

from typing import Callable, Literal

import einops
import flax.linen as nn
import jax.numpy as jnp

from jvdm.errors import ConfigError
from jvdm.models.layers.long_attention import LongAttention, window_fused_attention
from jvdm.models.layers.norms import frame_group_norm
from jvdm.models.layers.rope import apply_rope, video_rope
from jvdm.ops.freelong import band_mask, spectral_blend
from jvdm.parallel.axes import EMBED, HEAD_DIM, QKV_HEADS
from jvdm.parallel.context_attention import attention

LAYOUTS = ("spatial", "temporal", "full", "windowed")


def frame_mask(query_frames, key_frames, causal: bool, window: int | None, key_valid=None):
  """`[Lq, Lk]` boolean: may a token of frame q attend to one of frame k."""
  delta = query_frames[:, None] - key_frames[None, :]
  allowed = jnp.ones(delta.shape, bool)
  if causal:
    allowed &= delta >= 0
  if window is not None:
    allowed &= jnp.abs(delta) < window
  if key_valid is not None:
    allowed &= key_valid[None, :]
  return allowed


def video_attention(
  query,
  key,
  value,
  *,
  layout: str,
  frames,
  grid: tuple[int, int],
  rotate: Callable | None = None,
  causal: bool = False,
  window: int | None = None,
  long: LongAttention | None = None,
  cache=None,
  implementation: str | None = None,
  context_parallel: str | None = None,
):
  """Attention over video tokens (module docstring).

  Args:
    query, key, value: `[B, F, P, N, D]`, before positions.
    layout: one of LAYOUTS.
    frames: `[F]`, the absolute frame index of each frame (for positions, masks, the cache).
    grid: (rows, columns) of a frame's P tokens (FreeLong's 3D FFT).
    rotate: positions, `rotate(a [B, F', P, N, D], frames [F']) -> a`; None = none.
    causal, window: the frame mask ("windowed" and "temporal" layouts take `window`).
    long: FreeNoise/FreeLong for videos longer than `long.window` frames (not "spatial").
    cache: None, or a `LayerCache` of earlier frames, read by the "full" and "windowed"
      layouts.
    implementation, context_parallel: passed to `jvdm.parallel.context_attention.attention`.

  Returns:
    (out `[B, F, P, N, D]`, the rotated keys of this call, for a KV cache).
  """
  if layout not in LAYOUTS:
    raise ConfigError(f"attention layout must be one of {LAYOUTS}, got {layout!r}")
  batch, num_frames, num_tokens = query.shape[:3]
  window = window if layout in ("windowed", "temporal") else None
  unrotated_query, unrotated_key = query, key
  if rotate is not None:
    query, key = rotate(query, frames), rotate(key, frames)
  if layout == "spatial" or long is None or not long.applies(num_frames):
    long = None

  if long is not None and long.method == "freenoise":
    # FreeNoise (sec. 3.3): attention within overlapping windows of frames, fused per frame;
    # the layer's own causal/window mask applies within each window.
    window_frames = jnp.arange(long.window)
    mask = None
    if causal or window is not None:
      mask = frame_mask(window_frames, window_frames, causal, window)
    out = window_fused_attention(
      unrotated_query,
      unrotated_key,
      value,
      long.window,
      long.stride,
      long.weighting,
      per_position=layout == "temporal",
      frame_mask=mask,
      rotate=rotate,
      implementation=implementation,
      context_parallel=None if layout == "temporal" else context_parallel,
    )
    return out, key
  if layout == "spatial":
    out = attention(
      *(einops.rearrange(a, "b f p n d -> (b f) p n d") for a in (query, key, value)),
      implementation=implementation,
    )
    return einops.rearrange(out, "(b f) p n d -> b f p n d", b=batch), key
  if layout == "temporal":
    mask = frame_mask(frames, frames, causal, window) if causal or window is not None else None
    sequence = lambda a: einops.rearrange(a, "b f p n d -> (b p) f n d")
    attend = lambda mask: einops.rearrange(
      attention(sequence(query), sequence(key), sequence(value), mask, implementation),
      "(b p) f n d -> b f p n d",
      b=batch,
    )
  else:  # full or windowed, over all tokens of the chunk and the cache
    query_frames = jnp.repeat(frames, num_tokens)
    flat = lambda a: einops.rearrange(a, "b f p n d -> b (f p) n d")
    keys, values, key_frames, key_valid = flat(key), flat(value), query_frames, None
    if cache is not None:
      keys = jnp.concatenate([flat(cache.keys.astype(key.dtype)), keys], axis=1)
      values = jnp.concatenate([flat(cache.values.astype(value.dtype)), values], axis=1)
      cached_frames = jnp.repeat(cache.slot_frames, num_tokens)
      key_valid = jnp.concatenate([cached_frames >= 0, jnp.ones(query_frames.shape, bool)])
      key_frames = jnp.concatenate([cached_frames, query_frames])
    mask = None
    if causal or window is not None or key_valid is not None:
      mask = frame_mask(query_frames, key_frames, causal, window, key_valid)
    attend = lambda mask: einops.rearrange(
      attention(
        flat(query), keys, values, mask, implementation, context_parallel if cache is None else None
      ),
      "b (f p) n d -> b f p n d",
      f=num_frames,
    )
  out = attend(mask)
  if long is not None:  # freelong
    # FreeLong (sec. 3.2): the same attention again, local (frames within the band), and the
    # low temporal/spatial frequencies of the global pass with the high ones of the local.
    band = band_mask(
      num_frames, long.window, 1 if layout == "temporal" else num_tokens, long.local_mask
    )
    local = attend(band if mask is None else mask & band)
    on_grid = lambda a: a.reshape((batch, num_frames) + tuple(grid) + (-1,))
    out = spectral_blend(
      on_grid(out), on_grid(local), long.temporal_cutoff, long.spatial_cutoff, long.low_pass
    ).reshape(out.shape)
  return out, key


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
    attention_implementation: passed to `jvdm.parallel.context_attention.attention`: None
      (XLA's choice), "xla", "cudnn" or "chunked" (faster on CPU for long sequences).
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
        a, frames if self.axis == "joint" else jnp.zeros_like(frames), rows, cols
      )
    if self.axis == "spatial":
      return None
    # By frame index only, over the whole head dimension.
    return lambda a, frames: apply_rope(a.reshape(a.shape[:2] + (-1, a.shape[-1])), frames).reshape(
      a.shape
    )

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

    tokens = lambda a: a.reshape(batch, num_frames, height * width, num_heads, self.head_dim)
    out, _ = video_attention(
      tokens(query),
      tokens(key),
      tokens(value),
      layout="full" if self.axis == "joint" else self.axis,
      frames=jnp.arange(num_frames),
      grid=(height, width),
      rotate=self._rotation(height, width),
      causal=self.causal,
      long=self.long_attention,
      implementation=self.attention_implementation,
    )
    out = out.reshape(query.shape)

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
