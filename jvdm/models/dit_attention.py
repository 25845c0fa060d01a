"""The attention layers of the video DiT (`jvdm.models.dit`): self-attention over `[B, F, P, C]`
tokens in the full, factorized and windowed layouts, frame-causal when asked, with 3D RoPE, the
KV-cache read for chunked generation, FreeNoise/FreeLong long attention and context-parallel
dispatch; and cross-attention to conditioning embeddings (PixArt-alpha).
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jvdm.models.layers.attention import video_attention
from jvdm.models.layers.long_attention import LongAttention
from jvdm.models.layers.rope import video_rope
from jvdm.parallel.axes import EMBED, HEAD_DIM, QKV_HEADS
from jvdm.parallel.context_attention import attention


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
    or a `LayerCache`. Returns (out, (k, v) of x)."""
    channels = x.shape[-1]
    head_dim = channels // self.num_heads
    qkv_kernel = self.param(
      "qkv_kernel",
      nn.with_logical_partitioning(
        nn.initializers.lecun_normal(in_axis=0, out_axis=(1, 2, 3)),
        (EMBED, None, QKV_HEADS, HEAD_DIM),
      ),
      (channels, 3, self.num_heads, head_dim),
      self.param_dtype,
    )
    x, qkv_kernel = nn.dtypes.promote_dtype(x, qkv_kernel, dtype=self.dtype)
    qkv = jnp.einsum("bfpc,cknd->bfpknd", x, qkv_kernel)
    query, key, value = (qkv[..., i, :, :] for i in range(3))  # [B, F, P, N, D]
    # a [B, F', P, N, D], a_frames [F']
    rotate = (lambda a, a_frames: video_rope(a, a_frames, rows, cols)) if self.rope else None
    out, rotated_key = video_attention(
      query,
      key,
      value,
      layout=self.layout,
      frames=frames,
      grid=self.grid,
      rotate=rotate,
      causal=self.causal,
      window=self.temporal_window,
      long=self.long_attention,
      cache=cache,
      implementation=self.attention_implementation,
      context_parallel=self.context_parallel,
    )

    out_kernel = self.param(
      "out_kernel",
      nn.with_logical_partitioning(
        nn.initializers.lecun_normal(in_axis=(0, 1), out_axis=2), (QKV_HEADS, HEAD_DIM, EMBED)
      ),
      (self.num_heads, head_dim, channels),
      self.param_dtype,
    )
    out, out_kernel = nn.dtypes.promote_dtype(out, out_kernel, dtype=self.dtype)
    return jnp.einsum("bfpnd,ndc->bfpc", out, out_kernel), (rotated_key, value)


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
    q_kernel = self.param(
      "q_kernel",
      nn.with_logical_partitioning(init, (EMBED, QKV_HEADS, HEAD_DIM)),
      (channels, self.num_heads, head_dim),
      self.param_dtype,
    )
    kv_init = nn.initializers.lecun_normal(in_axis=0, out_axis=(1, 2, 3))
    kv_kernel = self.param(
      "kv_kernel",
      nn.with_logical_partitioning(kv_init, (None, None, QKV_HEADS, HEAD_DIM)),
      (cond.shape[-1], 2, self.num_heads, head_dim),
      self.param_dtype,
    )
    out_kernel = self.param(
      "out_kernel",
      nn.with_logical_partitioning(nn.initializers.zeros_init(), (QKV_HEADS, HEAD_DIM, EMBED)),
      (self.num_heads, head_dim, channels),
      self.param_dtype,
    )
    x, cond, q_kernel, kv_kernel, out_kernel = nn.dtypes.promote_dtype(
      x, cond, q_kernel, kv_kernel, out_kernel, dtype=self.dtype
    )
    query = jnp.einsum("bfpc,cnd->bfpnd", x, q_kernel)
    if cond.ndim == 4:  # each frame's tokens attend to that frame's condition
      query = query.reshape(batch * num_frames, num_tokens, self.num_heads, head_dim)
      cond = cond.reshape((batch * num_frames,) + cond.shape[2:])
      cond_mask = None if cond_mask is None else cond_mask.reshape(cond.shape[:2])
    else:
      query = query.reshape(batch, num_frames * num_tokens, self.num_heads, head_dim)
    key_value = jnp.einsum("blc,cknd->blknd", cond, kv_kernel)
    out = attention(
      query,
      key_value[:, :, 0],
      key_value[:, :, 1],
      implementation=self.attention_implementation,
      key_valid=cond_mask,
    )
    out = jnp.einsum("blnd,ndc->blc", out, out_kernel)
    return out.reshape(batch, num_frames, num_tokens, channels)
