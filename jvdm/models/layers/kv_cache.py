"""A fixed-capacity key/value cache of past frames, as an explicit pytree.

Autoregressive video models (ViD-GPT, Gao et al. 2024; Ca2-VDM, Gao et al. 2024; StreamingT2V
and Self-Forcing style rollouts) attend from the frames being generated to the keys and values
of frames already generated. The cache holds them for every layer in `capacity` frame slots:
the first `num_sinks` slots keep the first frames of the video for good (attention sinks,
Xiao et al. 2024), the others form a ring buffer of the most recent frames. Writes use traced
frame indices, so a whole rollout is one `lax.scan` with no Python bookkeeping between chunks.
"""

from typing import NamedTuple

import flax.struct
import jax.numpy as jnp

from jvdm.errors import ConfigError


class LayerCache(NamedTuple):
  """One layer's view of a `KVCache`, as the attention reads it."""

  keys: jnp.ndarray  # [B, S, P, N, D], rotated
  values: jnp.ndarray  # like keys
  slot_frames: jnp.ndarray  # int32 [S], -1 = empty


@flax.struct.dataclass
class KVCache:
  keys: jnp.ndarray  # [L, B, S, P, N, D]: layers, batch, frame slots, tokens per frame, heads, D
  values: jnp.ndarray  # like keys
  slot_frames: jnp.ndarray  # int32 [S]: the frame index held by each slot, -1 when empty
  num_sinks: int = flax.struct.field(pytree_node=False, default=0)

  @classmethod
  def create(
    cls,
    num_layers: int,
    batch: int,
    capacity: int,
    tokens_per_frame: int,
    num_heads: int,
    head_dim: int,
    num_sinks: int = 0,
    dtype=jnp.float32,
  ) -> "KVCache":
    """An empty cache of `capacity` frames, `num_sinks` of them kept from the video's start."""
    if not 0 <= num_sinks < capacity:
      raise ConfigError(
        f"The cache needs 0 <= sink frames < capacity, got {num_sinks} sink "
        f"frames for a capacity of {capacity} frames."
      )
    shape = (num_layers, batch, capacity, tokens_per_frame, num_heads, head_dim)
    return cls(
      keys=jnp.zeros(shape, dtype),
      values=jnp.zeros(shape, dtype),
      slot_frames=jnp.full((capacity,), -1, jnp.int32),
      num_sinks=num_sinks,
    )

  @property
  def capacity(self) -> int:
    return self.slot_frames.shape[0]

  def slots(self, frames: jnp.ndarray) -> jnp.ndarray:
    """The slot of each (traced) frame index: sinks first, then the ring of recent frames."""
    ring = self.capacity - self.num_sinks
    return jnp.where(
      frames < self.num_sinks, frames, self.num_sinks + (frames - self.num_sinks) % ring
    )

  def check_chunk(self, num_frames: int) -> None:
    ring = self.capacity - self.num_sinks
    if num_frames > ring:
      raise ConfigError(
        f"A chunk of {num_frames} frames does not fit the cache's ring of "
        f"{ring} frames (capacity {self.capacity}, {self.num_sinks} sinks); "
        "use a capacity of at least chunk + sinks frames."
      )

  def write(self, keys: jnp.ndarray, values: jnp.ndarray, first_frame) -> "KVCache":
    """Stores `[L, B, F, P, N, D]` keys and values of frames first_frame .. first_frame + F - 1.

    A sink slot, once written, is kept: later frames go to the ring.
    """
    self.check_chunk(keys.shape[2])
    frames = first_frame + jnp.arange(keys.shape[2], dtype=jnp.int32)
    slots = self.slots(frames)
    return self.replace(
      keys=self.keys.at[:, :, slots].set(keys.astype(self.keys.dtype)),
      values=self.values.at[:, :, slots].set(values.astype(self.values.dtype)),
      slot_frames=self.slot_frames.at[slots].set(frames),
    )
