"""The UMT5 text encoder (Chung et al. 2023, "UniMax"), Wan 2.1's text encoder.

T5's encoder (Raffel et al. 2020) with UMT5's change: every layer has its own relative position
bias, not only the first. Each layer is pre-norm: RMS norm (no mean, no bias), self-attention
whose logits are the unscaled query-key products plus the layer's bias for the (bucketed)
relative position, then RMS norm and a gated-GELU feed-forward (GELU with the tanh
approximation, T5 v1.1). A final RMS norm ends the stack. The parameter names follow the
roles; `jvdm.pretrained.umt5` maps transformers' `UMT5EncoderModel` weights onto them.
"""

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jvdm.parallel.axes import EMBED, MLP, NORM, VOCAB


def relative_position_buckets(
  num_queries: int, num_keys: int, num_buckets: int, max_distance: int
) -> jnp.ndarray:
  """int32 `[Q, K]`: T5's bidirectional bucket of each key's offset from each query (Raffel et
  al. 2020, sec. 2.1; Mesh TensorFlow's `_relative_position_bucket`). Half of the buckets are
  for keys after the query; within each half, offsets below a quarter of the buckets are exact
  and larger ones share logarithmically wider buckets up to `max_distance`."""
  offset = jnp.arange(num_keys)[None, :] - jnp.arange(num_queries)[:, None]
  half = num_buckets // 2
  bucket = jnp.where(offset > 0, half, 0)
  distance = jnp.abs(offset)
  max_exact = half // 2
  log_ratio = jnp.log(jnp.maximum(distance, 1).astype(jnp.float32) / max_exact) / math.log(
    max_distance / max_exact
  )
  far = max_exact + (log_ratio * (half - max_exact)).astype(jnp.int32)  # truncates, as T5
  far = jnp.minimum(far, half - 1)
  return (bucket + jnp.where(distance < max_exact, distance, far)).astype(jnp.int32)


class RMSNorm(nn.Module):
  """T5's layer norm: x / rms(x) * scale, the mean of squares taken in float32."""

  epsilon: float = 1e-6
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    scale = self.param(
      "scale", nn.with_logical_partitioning(nn.initializers.ones, (NORM,)), (x.shape[-1],)
    )
    variance = jnp.mean(jnp.square(x.astype(jnp.float32)), axis=-1, keepdims=True)
    return (scale * (x * jax.lax.rsqrt(variance + self.epsilon))).astype(self.dtype)


class UMT5Layer(nn.Module):
  num_heads: int
  head_dim: int
  mlp_dim: int
  num_buckets: int
  max_distance: int
  epsilon: float
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, key_valid):
    """x `[B, L, C]`; key_valid `[B, L]` bool (False = padding)."""

    def dense(features, name, axes=(EMBED, MLP)):  # (MLP, EMBED) back to the width
      init = nn.with_logical_partitioning(nn.initializers.lecun_normal(), axes)
      return nn.Dense(features, use_bias=False, dtype=self.dtype, kernel_init=init, name=name)

    batch, length, channels = x.shape
    h = RMSNorm(self.epsilon, self.dtype, name="attention_norm")(x)
    split = lambda a: a.reshape(batch, length, self.num_heads, self.head_dim)
    inner = self.num_heads * self.head_dim
    query, key, value = (split(dense(inner, name)(h)) for name in ("query", "key", "value"))
    table = self.param(
      "relative_bias",
      nn.with_logical_partitioning(nn.initializers.normal(1.0), (None, None)),
      (self.num_buckets, self.num_heads),
    )
    buckets = relative_position_buckets(length, length, self.num_buckets, self.max_distance)
    bias = jnp.transpose(table[buckets], (2, 0, 1))  # [N, Q, K]
    logits = jnp.einsum("bqnd,bknd->bnqk", query, key).astype(jnp.float32) + bias[None]
    logits = jnp.where(key_valid[:, None, None, :], logits, jnp.finfo(jnp.float32).min)
    weights = jax.nn.softmax(logits, axis=-1).astype(self.dtype)  # no 1/sqrt(d) in T5
    attended = jnp.einsum("bnqk,bknd->bqnd", weights, value).reshape(batch, length, inner)
    x = x + dense(channels, "out", (MLP, EMBED))(attended)

    h = RMSNorm(self.epsilon, self.dtype, name="mlp_norm")(x)
    gate = nn.gelu(dense(self.mlp_dim, "gate")(h), approximate=True)
    return x + dense(channels, "down", (MLP, EMBED))(gate * dense(self.mlp_dim, "up")(h))


class UMT5Encoder(nn.Module):
  """Token ids `[B, L]` and their mask `[B, L]` (1 = token, 0 = padding) -> `[B, L, width]`."""

  vocab_size: int
  width: int
  depth: int
  num_heads: int
  head_dim: int
  mlp_dim: int
  num_buckets: int = 32
  max_distance: int = 128
  epsilon: float = 1e-6
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, ids, mask):
    embedding = self.param(
      "token_embedding",
      nn.with_logical_partitioning(nn.initializers.normal(1.0), (VOCAB, EMBED)),
      (self.vocab_size, self.width),
    )
    x = jnp.take(embedding, ids, axis=0).astype(self.dtype)
    key_valid = mask.astype(bool)
    for i in range(self.depth):
      x = UMT5Layer(
        self.num_heads,
        self.head_dim,
        self.mlp_dim,
        self.num_buckets,
        self.max_distance,
        self.epsilon,
        self.dtype,
        name=f"layer_{i}",
      )(x, key_valid)
    return RMSNorm(self.epsilon, self.dtype, name="final_norm")(x)
