"""The transformer block of the video DiT (`jvdm.models.dit`): adaLN-Zero (or Wan 2.1's
table) modulated self-attention over the block's layout, cross-attention to conditioning
embeddings, and a feed-forward layer."""

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from jvdm.models.dit_attention import Attention, CrossAttention
from jvdm.models.layers.dense import dense
from jvdm.models.layers.kv_cache import LayerCache
from jvdm.models.layers.long_attention import LongAttention
from jvdm.parallel.axes import ACT_EMBED, BATCH, EMBED, FRAMES, LENGTH

TOKEN_AXES = (BATCH, FRAMES, LENGTH, ACT_EMBED)

MODULATIONS = ("adaln_zero", "table")
CROSS_ATTENTION_NORMS = ("plain", "affine", "none")


class BlockContext(NamedTuple):
  """What every block sees besides the tokens."""

  # [B, F, C], the time embedding of each latent frame ("adaln_zero"), or its shared
  # projection [B, F, 6C] ("table")
  embedding: jax.Array
  frames: jax.Array  # [F], absolute latent frame indices
  rows: jax.Array  # [P], each token's row
  cols: jax.Array  # [P], each token's column
  cond: jax.Array | None  # [B, L, D] or [B, F, L, D] conditioning embeddings
  cond_mask: jax.Array | None  # [B, L] or [B, F, L], False = padding
  image: jax.Array | None = None  # [B, L_image, C], image embeddings (Wan image-to-video)


class DiTBlock(nn.Module):
  """adaLN-Zero block (Peebles & Xie 2023, sec. 3.2): each sub-layer's input is normalized,
  scaled and shifted, and its output gated, by per-frame projections of the time embedding;
  the gates start at zero, so the block starts as the identity.

  With `modulation="table"` (Wan 2.1) the block adds its learned `scale_shift_table` [6, C] to
  the time projection that all blocks share, instead of projecting the embedding itself.
  """

  num_heads: int
  mlp_ratio: float
  layout: str
  causal: bool
  temporal_window: int | None
  rope: bool
  attention_implementation: str | None
  context_parallel: str | None
  dtype: Any
  param_dtype: Any
  long_attention: LongAttention | None = None
  grid: tuple[int, int] | None = None
  modulation: str = "adaln_zero"
  mlp_dim: int = 0
  attention_bias: bool = False
  qk_norm: bool = False
  rope_pairs: str = "halves"
  cross_attention_norm: str = "plain"

  @nn.compact
  def __call__(self, x, context: BlockContext, layer_cache: LayerCache | None):
    """x `[B, F, P, C]`. Returns (x, this chunk's (keys, values))."""
    channels = x.shape[-1]
    kinds = ("spatial", "temporal") if self.layout == "factorized" else (self.layout,)
    kwargs = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    width = 3 * channels * (len(kinds) + 1)
    if self.modulation == "table":  # Wan 2.1: shift, scale, gate of attention, then of the MLP
      table = self.param(
        "scale_shift_table",
        nn.with_logical_partitioning(nn.initializers.normal(channels**-0.5), (None, EMBED)),
        (width // channels, channels),
        self.param_dtype,
      )
      modulation = context.embedding + table.reshape(width).astype(context.embedding.dtype)
    else:
      modulation = dense(width, zero_init=True, name="modulation", **kwargs)(
        nn.silu(context.embedding)
      )
    modulation = jnp.split(modulation[:, :, None, :], 3 * (len(kinds) + 1), axis=-1)
    norm = lambda h: nn.LayerNorm(use_scale=False, use_bias=False, dtype=self.dtype)(h)
    new_kv = None
    for i, kind in enumerate(kinds):
      shift, scale, gate = modulation[3 * i : 3 * i + 3]
      attention = Attention(
        self.num_heads,
        kind,
        self.causal,
        self.temporal_window,
        self.rope,
        self.attention_implementation,
        self.context_parallel,
        self.long_attention,
        self.grid,
        use_bias=self.attention_bias,
        qk_norm=self.qk_norm,
        rope_pairs=self.rope_pairs,
        name=f"attention_{kind}",
        **kwargs,
      )
      out, kv = attention(
        norm(x) * (1 + scale) + shift,
        context.frames,
        context.rows,
        context.cols,
        layer_cache if kind != "spatial" else None,
      )
      new_kv = kv if kind != "spatial" else new_kv
      x = nn.with_logical_constraint(x + gate * out, TOKEN_AXES)
    if context.cond is not None:
      cross_norm = norm  # "plain"; Wan's is affine
      if self.cross_attention_norm == "none":
        cross_norm = lambda h: h
      elif self.cross_attention_norm == "affine":
        cross_norm = nn.LayerNorm(
          dtype=self.dtype, param_dtype=self.param_dtype, name="cross_attention_norm"
        )
      x = x + CrossAttention(
        self.num_heads,
        self.attention_implementation,
        use_bias=self.attention_bias,
        qk_norm=self.qk_norm,
        name="cross_attention",
        **kwargs,
      )(cross_norm(x), context.cond, context.cond_mask, context.image)
    shift, scale, gate = modulation[-3:]
    h = norm(x) * (1 + scale) + shift
    h = dense(self.mlp_dim or int(channels * self.mlp_ratio), name="mlp_in", **kwargs)(h)
    h = dense(channels, name="mlp_out", **kwargs)(nn.gelu(h))
    return nn.with_logical_constraint(x + gate * h, TOKEN_AXES), new_kv
