"""A small trainable text encoder: caption tokens -> embeddings a backbone cross-attends to.

Large video models cross-attend to a frozen T5 or CLIP encoder's outputs; those are given to
the DiT as arrays (`VideoDiT.cond_dim`). For data with a small closed vocabulary, such as the
synthetic videos' captions (`jvdm.data.captions`), this encoder is trained with the backbone:
token embeddings plus sinusoidal positions, then pre-LayerNorm transformer blocks with
bidirectional self-attention that ignores padding (as a BERT/T5 encoder). Token 0 is padding;
every caption starts with a non-padding token (BOS), so no row is all padding.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jvdm.errors import ShapeError
from jvdm.models.layers.dense import dense
from jvdm.models.layers.embeddings import sinusoidal_embedding
from jvdm.parallel.axes import EMBED, VOCAB
from jvdm.parallel.context_attention import attention

PAD = 0


class TextEncoder(nn.Module):
  """`tokens int [B, L] -> (embeddings [B, L, width], valid [B, L] bool)`."""

  vocab_size: int
  width: int = 128
  depth: int = 2
  num_heads: int = 4
  mlp_ratio: float = 4.0
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, tokens: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    if tokens.ndim != 2 or not jnp.issubdtype(tokens.dtype, jnp.integer):
      raise ShapeError(
        f"Caption tokens must be integers [B, L], got {tokens.dtype} {tokens.shape}."
      )
    if self.width % self.num_heads:
      raise ShapeError(
        f"Text encoder width {self.width} is not divisible by num_heads {self.num_heads}."
      )
    kwargs = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    valid = tokens != PAD  # [B, L]
    table = self.param(
      "token_embedding",
      nn.with_logical_partitioning(nn.initializers.normal(0.02), (VOCAB, EMBED)),
      (self.vocab_size, self.width),
      self.param_dtype,
    )
    h = jnp.take(table, tokens, axis=0).astype(self.dtype)
    h = h + sinusoidal_embedding(jnp.arange(tokens.shape[1]), self.width).astype(self.dtype)
    head_dim = self.width // self.num_heads
    for i in range(self.depth):
      x = nn.LayerNorm(dtype=self.dtype, name=f"attention_norm_{i}")(h)
      qkv = dense(3 * self.width, name=f"qkv_{i}", **kwargs)(x)
      q, k, v = (
        a.reshape(a.shape[:2] + (self.num_heads, head_dim)) for a in jnp.split(qkv, 3, axis=-1)
      )
      out = attention(q, k, v, key_valid=valid).reshape(h.shape)  # padding keys ignored
      h = h + dense(self.width, name=f"attention_out_{i}", **kwargs)(out)
      x = nn.LayerNorm(dtype=self.dtype, name=f"mlp_norm_{i}")(h)
      x = dense(int(self.width * self.mlp_ratio), name=f"mlp_in_{i}", **kwargs)(x)
      h = h + dense(self.width, name=f"mlp_out_{i}", **kwargs)(nn.gelu(x))
    return nn.LayerNorm(dtype=self.dtype, name="final_norm")(h), valid
