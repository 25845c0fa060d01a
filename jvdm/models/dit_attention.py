"""The attention layers of the video DiT (`jvdm.models.dit`): self-attention over `[B, F, P, C]`
tokens in the full, factorized and windowed layouts, frame-causal when asked, with 3D RoPE, the
KV-cache read for chunked generation, FreeNoise/FreeLong long attention and context-parallel
dispatch; and cross-attention to conditioning embeddings (PixArt-alpha), with Wan 2.1's image
embeddings beside the text's when given.

Switches for imported networks (Wan 2.1; all off for jvdm's own): `use_bias` adds biases to the
query/key/value and output projections; `qk_norm` RMS-normalizes queries and keys over all
heads together, with learned scales (Wan's "rms_norm_across_heads"), before RoPE;
`rope_pairs` picks which features RoPE rotates together (`jvdm.models.layers.rope`).
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jvdm.errors import ShapeError
from jvdm.models.layers.attention import video_attention
from jvdm.models.layers.long_attention import LongAttention
from jvdm.models.layers.rope import video_rope
from jvdm.parallel.axes import EMBED, HEAD_DIM, NORM, QKV_HEADS
from jvdm.parallel.context_attention import attention


def _head_bias(module: nn.Module, name: str, shape: tuple[int, ...], dtype):
  """A zero-initialized bias `shape` (..., heads, head_dim) of a projection."""
  axes = (None,) * (len(shape) - 2) + (QKV_HEADS, HEAD_DIM)
  return module.param(
    name, nn.with_logical_partitioning(nn.initializers.zeros_init(), axes), shape, dtype
  )


def _rms_across_heads(x, name: str, dtype, param_dtype):
  """RMSNorm of `[..., N, D]` over all N * D features at once (Wan's qk norm)."""
  norm = nn.RMSNorm(
    epsilon=1e-6,
    dtype=dtype,
    param_dtype=param_dtype,
    scale_init=nn.with_logical_partitioning(nn.initializers.ones_init(), (NORM,)),
    name=name,
  )
  return norm(x.reshape(x.shape[:-2] + (-1,))).reshape(x.shape)


def _output_projection(module: nn.Module, out, channels: int, zero_init: bool, use_bias: bool):
  """`[..., N, D] -> [..., channels]`, the heads merged by `out_kernel` (and `out_bias`)."""
  num_heads, head_dim = out.shape[-2:]
  init = (
    nn.initializers.zeros_init()
    if zero_init
    else nn.initializers.lecun_normal(in_axis=(0, 1), out_axis=2)
  )
  out_kernel = module.param(
    "out_kernel",
    nn.with_logical_partitioning(init, (QKV_HEADS, HEAD_DIM, EMBED)),
    (num_heads, head_dim, channels),
    module.param_dtype,
  )
  out, out_kernel = nn.dtypes.promote_dtype(out, out_kernel, dtype=module.dtype)
  out = jnp.einsum("...nd,ndc->...c", out, out_kernel)
  if use_bias:
    bias = module.param(
      "out_bias",
      nn.with_logical_partitioning(nn.initializers.zeros_init(), (EMBED,)),
      (channels,),
      module.param_dtype,
    )
    out = out + bias.astype(out.dtype)
  return out


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
  use_bias: bool = False
  qk_norm: bool = False
  rope_pairs: str = "halves"
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
    if self.use_bias:
      bias = _head_bias(self, "qkv_bias", (3, self.num_heads, head_dim), self.param_dtype)
      qkv = qkv + bias.astype(qkv.dtype)
    query, key, value = (qkv[..., i, :, :] for i in range(3))  # [B, F, P, N, D]
    if self.qk_norm:
      query = _rms_across_heads(query, "query_norm", self.dtype, self.param_dtype)
      key = _rms_across_heads(key, "key_norm", self.dtype, self.param_dtype)
    # a [B, F', P, N, D], a_frames [F']
    rotate = None
    if self.rope:
      rotate = lambda a, a_frames: video_rope(a, a_frames, rows, cols, pairs=self.rope_pairs)
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
    out = _output_projection(self, out, channels, zero_init=False, use_bias=self.use_bias)
    return out, (rotated_key, value)


class CrossAttention(nn.Module):
  """Tokens `[B, F, P, C]` attend to conditioning embeddings `[B, L, D]` (PixArt-alpha, Chen et
  al. 2024, sec. 2.3: cross-attention after self-attention, output projection zero-initialized
  so an untrained layer adds nothing).

  With `image` embeddings (Wan 2.1 image-to-video), the queries also attend to them through
  their own key and value projections (`image_kv_kernel`, keys RMS-normalized), and the two
  attention outputs are summed before the output projection (diffusers' `add_k_proj`)."""

  num_heads: int
  attention_implementation: str | None = None
  use_bias: bool = False
  qk_norm: bool = False
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  def _key_value(self, cond, name: str, head_dim: int, normalize_key: bool):
    """`[B, L, D] -> ([B, L, N, Dh] keys, values)` through the `{name}_kernel` projection."""
    kernel = self.param(
      f"{name}_kernel",
      nn.with_logical_partitioning(
        nn.initializers.lecun_normal(in_axis=0, out_axis=(1, 2, 3)),
        (None, None, QKV_HEADS, HEAD_DIM),
      ),
      (cond.shape[-1], 2, self.num_heads, head_dim),
      self.param_dtype,
    )
    cond, kernel = nn.dtypes.promote_dtype(cond, kernel, dtype=self.dtype)
    key_value = jnp.einsum("blc,cknd->blknd", cond, kernel)
    if self.use_bias:
      bias = _head_bias(self, f"{name}_bias", (2, self.num_heads, head_dim), self.param_dtype)
      key_value = key_value + bias.astype(key_value.dtype)
    key, value = key_value[:, :, 0], key_value[:, :, 1]
    if normalize_key:
      key = _rms_across_heads(key, f"{name}_key_norm", self.dtype, self.param_dtype)
    return key, value

  @nn.compact
  def __call__(self, x, cond, cond_mask=None, image=None):
    """x `[B, F, P, C]`; cond `[B, L, D]`, or `[B, F, L, D]` for one condition per frame;
    cond_mask: None or `[B, L]` (`[B, F, L]`), False = ignore (padding); image: None or image
    embeddings `[B, L_image, C]`."""
    batch, num_frames, num_tokens, channels = x.shape
    head_dim = channels // self.num_heads
    q_kernel = self.param(
      "q_kernel",
      nn.with_logical_partitioning(
        nn.initializers.lecun_normal(in_axis=0, out_axis=(1, 2)), (EMBED, QKV_HEADS, HEAD_DIM)
      ),
      (channels, self.num_heads, head_dim),
      self.param_dtype,
    )
    x, q_kernel = nn.dtypes.promote_dtype(x, q_kernel, dtype=self.dtype)
    query = jnp.einsum("bfpc,cnd->bfpnd", x, q_kernel)
    if self.use_bias:
      bias = _head_bias(self, "q_bias", (self.num_heads, head_dim), self.param_dtype)
      query = query + bias.astype(query.dtype)
    if self.qk_norm:
      query = _rms_across_heads(query, "query_norm", self.dtype, self.param_dtype)
    if cond.ndim == 4:  # each frame's tokens attend to that frame's condition
      if image is not None:
        raise ShapeError("Image embeddings go with one condition per video, not per frame.")
      query = query.reshape(batch * num_frames, num_tokens, self.num_heads, head_dim)
      cond = cond.reshape((batch * num_frames,) + cond.shape[2:])
      cond_mask = None if cond_mask is None else cond_mask.reshape(cond.shape[:2])
    else:
      query = query.reshape(batch, num_frames * num_tokens, self.num_heads, head_dim)
    key, value = self._key_value(cond, "kv", head_dim, self.qk_norm)
    out = attention(
      query, key, value, implementation=self.attention_implementation, key_valid=cond_mask
    )
    if image is not None:
      image_key, image_value = self._key_value(image, "image_kv", head_dim, True)
      out = out + attention(
        query, image_key, image_value, implementation=self.attention_implementation
      )
    out = _output_projection(self, out, channels, zero_init=True, use_bias=self.use_bias)
    return out.reshape(batch, num_frames, num_tokens, channels)
