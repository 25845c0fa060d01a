"""The attention layers of the video DiT (`jvdm.models.dit`): self-attention over `[B, F, P, C]`
tokens in the full, factorized and windowed layouts, frame-causal when asked, with 3D RoPE, the
KV-cache read for chunked generation, FreeNoise/FreeLong long attention and context-parallel
dispatch; and cross-attention to conditioning embeddings (PixArt-alpha).
"""

from typing import Any

import einops
import flax.linen as nn
import jax
import jax.numpy as jnp

from jvdm.models.layers.long_attention import LongAttention, window_fused_attention
from jvdm.models.layers.rope import video_rope
from jvdm.ops.freelong import band_mask, spectral_blend
from jvdm.parallel.axes import EMBED, HEAD_DIM, QKV_HEADS
from jvdm.parallel.context_attention import attention


def _frame_mask(query_frames, key_frames, causal: bool, window: int | None, key_valid=None):
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


class Attention(nn.Module):
  """Multi-head attention over tokens `[B, F, P, C]` along the block's layout.

  `grid` is the (rows, columns) of the P tokens of a frame, which FreeLong's 3D FFT needs.
  """

  num_heads: int
  layout: str  # full | windowed | spatial | temporal
  causal: bool = False
  temporal_window: int | None = None
  rope: bool = True
  attention_implementation: str | None = None
  context_parallel: str | None = None  # None | all_to_all | ring
  long_attention: LongAttention | None = None
  grid: tuple[int, int] | None = None
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, frames, rows, cols, cache=None):
    """x `[B, F, P, C]`; frames `[F]` (absolute frame indices), rows/cols `[P]`; cache: None
    or (keys, values `[B, S, P, N, D]`, slot_frames `[S]`). Returns (out, (k, v) of x)."""
    batch, num_frames, num_tokens, channels = x.shape
    head_dim = channels // self.num_heads
    qkv_kernel = self.param(
        "qkv_kernel",
        nn.with_logical_partitioning(nn.initializers.lecun_normal(in_axis=0, out_axis=(1, 2, 3)),
                                     (EMBED, None, QKV_HEADS, HEAD_DIM)),
        (channels, 3, self.num_heads, head_dim), self.param_dtype)
    x, qkv_kernel = nn.dtypes.promote_dtype(x, qkv_kernel, dtype=self.dtype)
    qkv = jnp.einsum("bfpc,cknd->bfpknd", x, qkv_kernel)
    query, key, value = (qkv[..., i, :, :] for i in range(3))  # [B, F, P, N, D]
    # a [B, F', P, N, D], a_frames [F']
    rotate = (lambda a, a_frames: video_rope(a, a_frames, rows, cols)) if self.rope else None
    unrotated_query, unrotated_key = query, key
    if rotate is not None:
      query, key = rotate(query, frames), rotate(key, frames)
    new_kv = (key, value)
    long = self.long_attention
    if self.layout == "spatial" or long is None or not long.applies(num_frames):
      long = None
    window = self.temporal_window if self.layout in ("windowed", "temporal") else None

    if long is not None and long.method == "freenoise":
      # FreeNoise (sec. 3.3): attention within overlapping windows of frames, fused per frame;
      # the layer's own causal/window mask applies within each window.
      window_frames = jnp.arange(long.window)
      frame_mask = None
      if self.causal or window is not None:
        frame_mask = _frame_mask(window_frames, window_frames, self.causal, window)
      out = window_fused_attention(
          unrotated_query, unrotated_key, value, long.window, long.stride, long.weighting,
          per_position=self.layout == "temporal", frame_mask=frame_mask, rotate=rotate,
          implementation=self.attention_implementation,
          context_parallel=None if self.layout == "temporal" else self.context_parallel)
    elif self.layout == "spatial":
      out = attention(*(einops.rearrange(a, "b f p n d -> (b f) p n d") for a in (query, key, value)),
                      implementation=self.attention_implementation)
      out = einops.rearrange(out, "(b f) p n d -> b f p n d", b=batch)
    elif self.layout == "temporal":
      mask = _frame_mask(frames, frames, self.causal, window)
      sequence = lambda a: einops.rearrange(a, "b f p n d -> (b p) f n d")
      attend = lambda mask: einops.rearrange(
          attention(sequence(query), sequence(key), sequence(value), mask,
                    self.attention_implementation), "(b p) f n d -> b f p n d", b=batch)
      out = attend(mask)
    else:  # full or windowed, over all tokens of the chunk and the cache
      query_frames = jnp.repeat(frames, num_tokens)
      flat = lambda a: einops.rearrange(a, "b f p n d -> b (f p) n d")
      keys, values, key_frames, key_valid = flat(key), flat(value), query_frames, None
      if cache is not None:
        cache_keys, cache_values, slot_frames = cache
        keys = jnp.concatenate([flat(cache_keys.astype(key.dtype)), keys], axis=1)
        values = jnp.concatenate([flat(cache_values.astype(value.dtype)), values], axis=1)
        cached_frames = jnp.repeat(slot_frames, num_tokens)
        key_valid = jnp.concatenate([cached_frames >= 0, jnp.ones(query_frames.shape, bool)])
        key_frames = jnp.concatenate([cached_frames, query_frames])
      mask = None
      if self.causal or window is not None or key_valid is not None:
        mask = _frame_mask(query_frames, key_frames, self.causal, window, key_valid)
      attend = lambda mask: einops.rearrange(
          attention(flat(query), keys, values, mask, self.attention_implementation,
                    self.context_parallel if cache is None else None),
          "b (f p) n d -> b f p n d", f=num_frames)
      out = attend(mask)
    if long is not None and long.method == "freelong":
      # FreeLong (sec. 3.2): the same attention again, local (frames within the band), and the
      # low temporal/spatial frequencies of the global pass with the high ones of the local.
      band = band_mask(num_frames, long.window, 1 if self.layout == "temporal" else num_tokens,
                       long.local_mask)
      local = attend(band if mask is None else mask & band)
      on_grid = lambda a: a.reshape((batch, num_frames) + self.grid + (-1,))
      out = spectral_blend(on_grid(out), on_grid(local), long.temporal_cutoff,
                           long.spatial_cutoff, long.low_pass).reshape(out.shape)

    out_kernel = self.param(
        "out_kernel",
        nn.with_logical_partitioning(nn.initializers.lecun_normal(in_axis=(0, 1), out_axis=2),
                                     (QKV_HEADS, HEAD_DIM, EMBED)),
        (self.num_heads, head_dim, channels), self.param_dtype)
    out, out_kernel = nn.dtypes.promote_dtype(out, out_kernel, dtype=self.dtype)
    return jnp.einsum("bfpnd,ndc->bfpc", out, out_kernel), new_kv


class CrossAttention(nn.Module):
  """Tokens `[B, F, P, C]` attend to conditioning embeddings `[B, L, D]` (PixArt-alpha, Chen et
  al. 2024, sec. 2.3: cross-attention after self-attention, output projection zero-initialized
  so an untrained layer adds nothing)."""

  num_heads: int
  attention_implementation: str | None = None
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, cond, cond_mask=None):
    """x `[B, F, P, C]`; cond `[B, L, D]`, or `[B, F, L, D]` for one condition per frame;
    cond_mask: None or `[B, L]` (`[B, F, L]`), False = ignore (padding)."""
    batch, num_frames, num_tokens, channels = x.shape
    head_dim = channels // self.num_heads
    init = nn.initializers.lecun_normal(in_axis=0, out_axis=(1, 2))
    q_kernel = self.param("q_kernel", nn.with_logical_partitioning(
        init, (EMBED, QKV_HEADS, HEAD_DIM)), (channels, self.num_heads, head_dim),
                          self.param_dtype)
    kv_init = nn.initializers.lecun_normal(in_axis=0, out_axis=(1, 2, 3))
    kv_kernel = self.param("kv_kernel", nn.with_logical_partitioning(
        kv_init, (None, None, QKV_HEADS, HEAD_DIM)), (cond.shape[-1], 2, self.num_heads, head_dim),
                           self.param_dtype)
    out_kernel = self.param("out_kernel", nn.with_logical_partitioning(
        nn.initializers.zeros_init(), (QKV_HEADS, HEAD_DIM, EMBED)),
                            (self.num_heads, head_dim, channels), self.param_dtype)
    x, cond, q_kernel, kv_kernel, out_kernel = nn.dtypes.promote_dtype(
        x, cond, q_kernel, kv_kernel, out_kernel, dtype=self.dtype)
    query = jnp.einsum("bfpc,cnd->bfpnd", x, q_kernel)
    if cond.ndim == 4:  # each frame's tokens attend to that frame's condition
      query = query.reshape(batch * num_frames, num_tokens, self.num_heads, head_dim)
      cond = cond.reshape((batch * num_frames,) + cond.shape[2:])
      cond_mask = None if cond_mask is None else cond_mask.reshape(cond.shape[:2])
    else:
      query = query.reshape(batch, num_frames * num_tokens, self.num_heads, head_dim)
    key_value = jnp.einsum("blc,cknd->blknd", cond, kv_kernel)
    mask = None if cond_mask is None else cond_mask[:, None, None, :]
    out = jax.nn.dot_product_attention(query, key_value[:, :, 0], key_value[:, :, 1], mask=mask,
                                       implementation=self.attention_implementation)
    out = jnp.einsum("blnd,ndc->blc", out, out_kernel)
    return out.reshape(batch, num_frames, num_tokens, channels)
