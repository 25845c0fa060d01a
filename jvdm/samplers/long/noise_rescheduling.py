"""Noise rescheduling (FreeNoise, Qiu et al. 2023, sec. 3.2).

A model trained on `window` frames drifts in content when a long video starts from i.i.d.
noise. FreeNoise draws the first window's noise only and builds every later frame from it:
frames [i, i + stride) are a random permutation of frames [i - window, i - window + stride),
for i = window, window + stride, ... (the last block cut at the video's end). Each window then
holds a shuffle of the same noise frames, which keeps the content consistent while the
shuffling keeps neighbouring windows from repeating. As the authors' code (AILab-CVC/FreeNoise,
`scripts/evaluation/inference_freenoise_mp.py:98-102`) and diffusers' `_prepare_latents_free_noise`
with `noise_type="shuffle_context"`; the random numbers differ (torch's generator). The authors'
loop needs (T - window) to be a multiple of the stride; jvdm cuts the last block at the end.
"""

from typing import Sequence

import jax
import jax.numpy as jnp

from jvdm.samplers.long.windows import window_starts


def rescheduled_noise(key: jax.Array, num_frames: int, frame_shape: Sequence[int], window: int,
                      stride: int, dtype=jnp.float32) -> jnp.ndarray:
  """`[num_frames, *frame_shape]` standard normal frames, rescheduled (FreeNoise sec. 3.2).

  Args:
    key: one key; the same key gives the same noise.
    num_frames: the video's length (static).
    frame_shape: one frame's shape, e.g. (H, W, C) (static).
    window: frames per window, 1 <= window <= num_frames; the first `window` frames are i.i.d.
    stride: frames per shuffled block, 1 <= stride <= window.
    dtype: the noise's dtype.
  """
  window_starts(num_frames, window, stride)  # validates window and stride with their sizes
  # The first window is drawn from `key` itself, as a plain sampler draws a whole video, so a
  # video of one window starts from the plain sampler's noise.
  base = jax.random.normal(key, (window, *frame_shape), dtype)
  shuffle_key = jax.random.fold_in(key, 1)
  blocks = -(-(num_frames - window) // stride)
  # source[j]: which of the first window's frames frame j copies (padded to whole blocks).
  source = jnp.concatenate([jnp.arange(window), jnp.zeros(blocks * stride, jnp.int32)])

  def shuffle_block(source, inputs):
    start, block_key = inputs
    taken = jax.lax.dynamic_slice(source, (start - window,), (stride,))
    shuffled = jax.random.permutation(block_key, taken)
    return jax.lax.dynamic_update_slice(source, shuffled, (start,)), None

  block_starts = window + stride * jnp.arange(blocks)
  source, _ = jax.lax.scan(shuffle_block, source,
                           (block_starts, jax.random.split(shuffle_key, blocks)))
  return base[source[:num_frames]]


def rescheduled_noise_per_sample(keys: jax.Array, num_frames: int, frame_shape: Sequence[int],
                                 window: int, stride: int, dtype=jnp.float32) -> jnp.ndarray:
  """`[B, num_frames, *frame_shape]`: `rescheduled_noise` for each of the `[B]` keys."""
  return jax.vmap(
      lambda key: rescheduled_noise(key, num_frames, frame_shape, window, stride, dtype))(keys)
