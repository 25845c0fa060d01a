"""Context-parallel attention: a long token sequence split over the mesh's `context` axis.

Two methods, chosen by `model.context_parallel`:

"all_to_all": sequence parallelism (DeepSpeed-Ulysses, Jacobs et al. 2023, sec. 3): each device
holds a slice of the sequence for all heads; one all-to-all gives it the whole sequence for
a slice of the heads, attention runs locally and exactly, and a second all-to-all returns the
sequence slice. Communication per layer is 4 all-to-alls of the q/k/v/out activations, and
nothing grows with the sequence beyond them, so the token count a model can train on grows
with the context axis. Needs the head count divisible by tensor x context.

"ring": ring attention (Liu et al. 2023, "Ring Attention with Blockwise Transformers", sec. 3;
blockwise softmax of Milakov & Gimelshein 2018). Each device keeps its query block and passes
its key/value block around the ring of `context` devices; after `context` steps every query
block has met every key/value block, with the softmax accumulated online (running max and
sum, in float32). No head-count constraint, and only a 1/context slice of keys and values is
resident at a time; the cost is `context - 1` neighbour exchanges of k/v per layer.
"""

import math
from typing import Any

import einops
import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec

from jvdm.errors import ConfigError
from jvdm.parallel.axes import BATCH, CONTEXT, HEADS, LENGTH


# Logits per step of the chunked attention: 4 MiB of float32, which stay in a CPU's cache.
CHUNK_LOGITS = 2**20
IMPLEMENTATIONS = (None, "xla", "cudnn", "chunked")


def _one_head_attention(query, key, value, mask):
  """Softmax attention of one head, q `[B, c, D]`, k/v `[B, Lk, D]`, mask None or broadcastable
  to `[B, c, Lk]`, with `jax.nn.dot_product_attention`'s numerics (XLA): float32 logits scaled
  after the product, masked logits set to -0.7 x float32's max, the softmax in float32, the
  probabilities in the values' dtype. Without a heads axis XLA needs no transposes around
  the two products."""
  logits = jnp.einsum("bqd,bkd->bqk", query, key, preferred_element_type=jnp.float32)
  logits = logits * jnp.float32(query.shape[-1] ** -0.5)
  if mask is not None:
    logits = jnp.where(mask, logits, -0.7 * jnp.finfo(jnp.float32).max)
  probabilities = jax.nn.softmax(logits, axis=-1).astype(value.dtype)
  return jnp.einsum("bqk,bkd->bqd", probabilities, value)


def chunked_attention(query, key, value, mask=None):
  """Softmax attention one head and one chunk of queries at a time (a `lax.map`), so that
  each step's logits `[B, c, Lk]` hold at most about `CHUNK_LOGITS` values.

  Each query row's softmax still spans all keys: the values are
  `jax.nn.dot_product_attention`'s up to float rounding (1.8e-7 at Wan's sizes). On CPU, XLA
  runs the one `[B, N, Lq, Lk]` logits tensor of the whole call memory-bound, with transposes
  around it: at Wan's 1950 video tokens of 8 heads of 64 the chunks are 2.4x faster for
  self-attention and 3x for cross-attention to 512 text tokens
  (benchmarks/wan_dit_speed.py).

  Args:
    query: `[B, Lq, N, D]`.
    key, value: `[B, Lk, N, D]`.
    mask: None, or boolean `[B or 1, 1, Lq or 1, Lk]` (True = may attend).
  """
  batch, length, heads, dim = query.shape
  chunk = min(length, max(8, CHUNK_LOGITS // key.shape[1]))
  chunks = -(-length // chunk)
  pad = chunks * chunk - length
  query = jnp.pad(query, ((0, 0), (0, pad), (0, 0), (0, 0)))
  query = einops.rearrange(query, "b (k c) n d -> (n k) b c d", c=chunk)
  key, value = (einops.rearrange(a, "b s n d -> n b s d") for a in (key, value))
  if mask is not None:
    mask = mask[:, 0]  # [B or 1, Lq or 1, Lk]
    if mask.shape[1] > 1:  # rows per query: pad them as the queries
      mask = jnp.pad(mask, ((0, 0), (0, pad), (0, 0)), constant_values=True)

  def step(inputs):
    query_chunk, head, index = inputs
    chunk_mask = mask
    if mask is not None and mask.shape[1] > 1:
      chunk_mask = jax.lax.dynamic_slice_in_dim(mask, index * chunk, chunk, axis=1)
    return _one_head_attention(query_chunk, key[head], value[head], chunk_mask)

  head = jnp.repeat(jnp.arange(heads), chunks)
  index = jnp.tile(jnp.arange(chunks), heads)
  out = jax.lax.map(step, (query, head, index))  # [N * K, B, c, D]
  out = einops.rearrange(out, "(n k) b c d -> b (k c) n d", n=heads)
  return out[:, :length]


def _kernel(query, key, value, mask, implementation):
  """`jax.nn.dot_product_attention`, or `chunked_attention` when asked ("chunked": faster on
  CPU once a call's logits exceed about 4 Mi, benchmarks/wan_dit_speed.py; XLA counts the
  `lax.map`'s body once, so a step's FLOP count, and the MFU logged from it, read low)."""
  if implementation not in IMPLEMENTATIONS:
    raise ConfigError(
      f"attention implementation {implementation!r}: expected one of {list(IMPLEMENTATIONS)}."
    )
  if implementation == "chunked":
    return chunked_attention(query, key, value, mask)
  return jax.nn.dot_product_attention(query, key, value, mask=mask, implementation=implementation)


def _plain_attention(query, key, value, mask, implementation, key_valid=None):
  if mask is not None:
    mask = mask[None, None]  # [1, 1, Lq, Lk]
  if key_valid is not None:  # [B, Lk] -> [B, 1, 1, Lk]
    padding = key_valid[:, None, None, :]
    mask = padding if mask is None else mask & padding
  return _kernel(query, key, value, mask, implementation)


METHODS = ("all_to_all", "ring")


def context_parallel_method(value: Any) -> str | None:
  """Normalizes `model.context_parallel`: None/False/"none" = off, True = "all_to_all"."""
  if value in (None, False, "", "none"):
    return None
  if value is True:
    return "all_to_all"
  if value not in METHODS:
    raise ConfigError(
      f"model.context_parallel={value!r}: expected one of none, {', '.join(METHODS)}."
    )
  return str(value)


def context_axis_size() -> int:
  """The size of the current mesh's `context` axis (1 outside a mesh)."""
  mesh = jax.sharding.get_abstract_mesh()
  return 1 if mesh.empty or CONTEXT not in mesh.axis_names else mesh.shape[CONTEXT]


def _ring_attention(q, k, v, full_mask):
  """The per-device body of ring attention (inside `shard_map` over `context`).

  q/k/v `[b, l, n, d]` are this device's blocks of the sequence; `full_mask` the whole
  `[L, L]` mask or None. Block `s` of the loop holds the keys of device `(i - s) mod c`.
  """
  context = jax.lax.axis_size(CONTEXT)
  index = jax.lax.axis_index(CONTEXT)
  block = q.shape[1]
  out_dtype = q.dtype
  q = q.astype(jnp.float32) / math.sqrt(q.shape[-1])
  running_max = jnp.full((q.shape[0], q.shape[2], block), -jnp.inf, jnp.float32)  # [b, n, l]
  running_sum = jnp.zeros_like(running_max)
  accumulated = jnp.zeros(q.shape, jnp.float32)  # [b, l, n, d]
  to_next = [(j, (j + 1) % context) for j in range(context)]
  for step in range(context):
    logits = jnp.einsum("bqnd,bknd->bnqk", q, k.astype(jnp.float32))
    if full_mask is not None:
      source = (index - step) % context
      allowed = jax.lax.dynamic_slice(full_mask, (index * block, source * block), (block, block))
      logits = jnp.where(allowed[None, None], logits, -jnp.inf)
    new_max = jnp.maximum(running_max, logits.max(axis=-1))
    finite_max = jnp.where(jnp.isfinite(new_max), new_max, 0.0)  # rows with nothing allowed yet
    weights = jnp.exp(logits - finite_max[..., None])
    rescale = jnp.exp(running_max - finite_max)
    running_sum = running_sum * rescale + weights.sum(axis=-1)
    accumulated = accumulated * jnp.moveaxis(rescale, 1, 2)[..., None] + jnp.einsum(
      "bnqk,bknd->bqnd", weights, v.astype(jnp.float32)
    )
    running_max = new_max
    if step < context - 1:
      k, v = (jax.lax.ppermute(a, CONTEXT, to_next) for a in (k, v))
  return (accumulated / jnp.moveaxis(running_sum, 1, 2)[..., None]).astype(out_dtype)


def _all_to_all_attention(implementation):
  def local(q, k, v, full_mask):
    # [b, L / c, n, d] -> [b, L, n / c, d]: the whole sequence, a slice of the heads.
    gather = lambda a: jax.lax.all_to_all(a, CONTEXT, split_axis=2, concat_axis=1, tiled=True)
    mask = None if full_mask is None else full_mask[None, None]
    out = _kernel(gather(q), gather(k), gather(v), mask, implementation)
    return jax.lax.all_to_all(out, CONTEXT, split_axis=1, concat_axis=2, tiled=True)

  return local


def context_parallel_attention(
  query: jnp.ndarray,
  key: jnp.ndarray,
  value: jnp.ndarray,
  mask: jnp.ndarray | None = None,
  implementation: str | None = None,
  method: str = "all_to_all",
) -> jnp.ndarray:
  """`jax.nn.dot_product_attention` over `[B, L, N, D]` with L split over the `context` axis.

  `method`: "all_to_all" (Ulysses) or "ring" (ring attention; `implementation` unused).

  The partitioning of (batch, length, heads) follows the logical axis rules in force
  (`BATCH`, `LENGTH`, `HEADS`); `LENGTH` must map to the `context` mesh axis. `mask`, if
  given, is the whole `[L, L]` boolean mask (True = attend), replicated. A batch that the
  data-parallel axes do not divide (a batch of 1 at init or sampling) falls back to XLA's
  automatic partitioning of plain attention; the result is the same.
  """
  spec = nn.logical_to_mesh_axes((BATCH, LENGTH, HEADS, None))
  if spec[1] != CONTEXT:
    raise ConfigError(
      f"Context-parallel attention needs the logical axis {LENGTH!r} mapped to "
      f"the mesh axis {CONTEXT!r}; the rules map it to {spec[1]!r}."
    )
  mesh = jax.sharding.get_abstract_mesh()
  context = mesh.shape[CONTEXT]
  head_shards = context * (mesh.shape[spec[2]] if isinstance(spec[2], str) else 1)
  if method == "ring":
    if query.shape[1] % context:
      raise ConfigError(
        f"Ring attention splits {query.shape[1]} tokens into {context} blocks "
        f"(the context axis): it must divide evenly."
      )
  elif query.shape[2] % head_shards or query.shape[1] % context:
    raise ConfigError(
      f"Context-parallel attention splits {query.shape[2]} heads into "
      f"{head_shards} (context x tensor) and {query.shape[1]} tokens into "
      f"{context}: both must divide evenly."
    )
  batch_shards = 1
  for axis in (spec[0],) if isinstance(spec[0], str) else (spec[0] or ()):
    batch_shards *= mesh.shape[axis]
  if query.shape[0] % batch_shards:  # e.g. init's batch of 1: XLA's own partitioning
    return _plain_attention(query, key, value, mask, implementation)
  spec = PartitionSpec(*spec)
  local = _ring_attention if method == "ring" else _all_to_all_attention(implementation)
  mask_spec = None if mask is None else PartitionSpec()
  return jax.shard_map(local, in_specs=(spec, spec, spec, mask_spec), out_specs=spec)(
    query, key, value, mask
  )


def attention(
  query,
  key,
  value,
  mask=None,
  implementation: str | None = None,
  context_parallel: str | None = None,
  key_valid=None,
) -> Any:
  """The attention kernel every layer calls: q `[B, Lq, N, D]`, k/v `[B, Lk, N, D]`; `mask`
  `[Lq, Lk]` (True = may attend) and `key_valid` `[B, Lk]` (False = padding), both optional.
  Plain attention (`jax.nn.dot_product_attention`, `implementation` "xla" or "cudnn";
  "chunked": `chunked_attention`; None: XLA's choice), or
  context-parallel (`context_parallel` = "all_to_all" | "ring") when asked and the mesh has a
  `context` axis > 1."""
  if context_parallel and context_axis_size() > 1:
    if key_valid is not None:
      raise ConfigError("Context-parallel attention takes no padding mask (key_valid).")
    return context_parallel_attention(query, key, value, mask, implementation, context_parallel)
  return _plain_attention(query, key, value, mask, implementation, key_valid)
