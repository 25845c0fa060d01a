"""Context-parallel attention: a long token sequence split over the mesh's `context` axis.

All-to-all sequence parallelism (DeepSpeed-Ulysses, Jacobs et al. 2023, sec. 3): each device
holds a slice of the sequence for all heads; one all-to-all gives it the whole sequence for
a slice of the heads, attention runs locally and exactly, and a second all-to-all returns the
sequence slice. Communication per layer is 4 all-to-alls of the q/k/v/out activations, and
nothing grows with the sequence beyond them, so the token count a model can train on grows
with the context axis. Needs the head count divisible by tensor x context.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec

from jvdm.errors import ConfigError
from jvdm.parallel.axes import BATCH, CONTEXT, HEADS, LENGTH


def _plain_attention(query, key, value, mask, implementation):
  return jax.nn.dot_product_attention(
      query, key, value, mask=None if mask is None else mask[None, None],
      implementation=implementation)


def context_axis_size() -> int:
  """The size of the current mesh's `context` axis (1 outside a mesh)."""
  mesh = jax.sharding.get_abstract_mesh()
  return 1 if mesh.empty or CONTEXT not in mesh.axis_names else mesh.shape[CONTEXT]


def context_parallel_attention(query: jnp.ndarray, key: jnp.ndarray, value: jnp.ndarray,
                               mask: jnp.ndarray | None = None,
                               implementation: str | None = None) -> jnp.ndarray:
  """`jax.nn.dot_product_attention` over `[B, L, N, D]` with L split over the `context` axis.

  The partitioning of (batch, length, heads) follows the logical axis rules in force
  (`BATCH`, `LENGTH`, `HEADS`); `LENGTH` must map to the `context` mesh axis. `mask`, if
  given, is the whole `[L, L]` boolean mask (True = attend), replicated. A batch that the
  data-parallel axes do not divide (a batch of 1 at init or sampling) falls back to XLA's
  automatic partitioning of plain attention; the result is the same.
  """
  spec = nn.logical_to_mesh_axes((BATCH, LENGTH, HEADS, None))
  if spec[1] != CONTEXT:
    raise ConfigError(f"Context-parallel attention needs the logical axis {LENGTH!r} mapped to "
                      f"the mesh axis {CONTEXT!r}; the rules map it to {spec[1]!r}.")
  mesh = jax.sharding.get_abstract_mesh()
  context = mesh.shape[CONTEXT]
  head_shards = context * (mesh.shape[spec[2]] if isinstance(spec[2], str) else 1)
  if query.shape[2] % head_shards or query.shape[1] % context:
    raise ConfigError(f"Context-parallel attention splits {query.shape[2]} heads into "
                      f"{head_shards} (context x tensor) and {query.shape[1]} tokens into "
                      f"{context}: both must divide evenly.")
  batch_shards = 1
  for axis in (spec[0],) if isinstance(spec[0], str) else (spec[0] or ()):
    batch_shards *= mesh.shape[axis]
  if query.shape[0] % batch_shards:  # e.g. init's batch of 1: XLA's own partitioning
    return _plain_attention(query, key, value, mask, implementation)
  spec = PartitionSpec(*spec)

  def local(q, k, v, full_mask):
    # [b, L / c, n, d] -> [b, L, n / c, d]: the whole sequence, a slice of the heads.
    gather = lambda a: jax.lax.all_to_all(a, CONTEXT, split_axis=2, concat_axis=1, tiled=True)
    out = jax.nn.dot_product_attention(
        gather(q), gather(k), gather(v),
        mask=None if full_mask is None else full_mask[None, None],
        implementation=implementation)
    return jax.lax.all_to_all(out, CONTEXT, split_axis=1, concat_axis=2, tiled=True)

  mask_spec = None if mask is None else PartitionSpec()
  return jax.shard_map(local, in_specs=(spec, spec, spec, mask_spec), out_specs=spec)(
      query, key, value, mask)


def attention(query, key, value, mask=None, implementation: str | None = None,
              context_parallel: bool = False) -> Any:
  """Plain attention, or context-parallel when asked and the mesh has a `context` axis > 1."""
  if context_parallel and context_axis_size() > 1:
    return context_parallel_attention(query, key, value, mask, implementation)
  return _plain_attention(query, key, value, mask, implementation)
