"""FreeNoise (Qiu et al. 2023): noise rescheduling (sec. 3.2) and multi-prompt generation with
motion injection (sec. 3.4). Its third part, window-based attention fusion (sec. 3.3), is a
layer option: `jvdm.models.layers.long_attention`.

Noise rescheduling (sec. 3.2).
A model trained on `window` frames drifts in content when a long video starts from i.i.d.
noise. FreeNoise draws the first window's noise only and builds every later frame from it:
frames [i, i + stride) are a random permutation of frames [i - window, i - window + stride),
for i = window, window + stride, ... (the last block cut at the video's end). Each window then
holds a shuffle of the same noise frames, which keeps the content consistent while the
shuffling keeps neighbouring windows from repeating. As the authors' code (AILab-CVC/FreeNoise,
`scripts/evaluation/inference_freenoise_mp.py:98-102`) and diffusers' `_prepare_latents_free_noise`
with `noise_type="shuffle_context"`; the random numbers differ (torch's generator). The authors'
loop needs (T - window) to be a multiple of the stride; jvdm cuts the last block at the end.

Motion injection (sec. 3.4).
A long video gets several prompts, P >= 1, spread over its frames. Switching prompts for the
whole trajectory breaks the video's layout, which is settled early in sampling; so the frames'
own prompts enter the layers that shape the layout only during a few middle steps.

What the authors' code does (AILab-CVC/FreeNoise, VideoCrafter2, two prompts):
- Per-frame prompts (`scripts/evaluation/funcs.py:172-183`): the first 3T/8 frames (rounded
  down) take prompt 0, the last 3T/8 prompt 1, and the frames between the two embeddings
  linearly interpolated, from prompt 0 exactly to prompt 1 exactly.
- Which layers (`lvdm/modules/attention_freenoise.py:213`, `openaimodel3d_freenoise.py:414,
  459, 502`): the cross-attention of the U-Net's encoder and middle block takes the per-frame
  prompts during DDIM steps 5 to 15 of 50 (counted from 0 at pure noise) and the LAST prompt,
  for every frame, at all other steps (`lvdm/models/samplers/ddim_mp.py:227`); the decoder's
  cross-attention always takes the per-frame prompts. The switch acts on the conditional pass
  of classifier-free guidance only (the null prompt is the same for every frame).

What jvdm does (`frame_conditions`, `motion_injection`):
- The same per-frame layout, generalized to P prompts: P equal segments, and around each inner
  boundary a ramp of half a segment (for P = 2 the authors' 3T/8 | T/4 | 3T/8 exactly).
  Embedding conditions (float) are interpolated along the ramp. Caption tokens (int) cannot be
  interpolated outside the model (the DiT embeds them inside), so a ramp frame takes the nearer
  of its two prompts.
- The steps: `injection_steps` as fractions of the solver's steps, (0.1, 0.3) = the authors'
  steps 5 to 15 of 50, turned into the times of those steps on the base sampler's grid
  (`injection_times`). `injection_times` can be given directly instead (jvdm's earlier
  behaviour: t in [0.2, 0.8]).
- Not matched: the layers. jvdm's caption DiT has no encoder or decoder and one condition
  reaches every block through one denoiser call, so the whole model follows the encoder's rule:
  own prompts during the injection steps, the last prompt at every other step. The authors'
  decoder, which always sees the per-frame prompts, has no counterpart.
"""

import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jvdm.errors import ConfigError, ShapeError
from jvdm.ops.windows import window_starts


def rescheduled_noise(
  key: jax.Array,
  num_frames: int,
  frame_shape: Sequence[int],
  window: int,
  stride: int,
  dtype=jnp.float32,
) -> jnp.ndarray:
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
  source, _ = jax.lax.scan(
    shuffle_block, source, (block_starts, jax.random.split(shuffle_key, blocks))
  )
  return base[source[:num_frames]]


def rescheduled_noise_per_sample(
  keys: jax.Array,
  num_frames: int,
  frame_shape: Sequence[int],
  window: int,
  stride: int,
  dtype=jnp.float32,
) -> jnp.ndarray:
  """`[B, num_frames, *frame_shape]`: `rescheduled_noise` for each of the `[B]` keys."""
  return jax.vmap(
    lambda key: rescheduled_noise(key, num_frames, frame_shape, window, stride, dtype)
  )(keys)


INJECTION_STEPS = (0.1, 0.3)  # FreeNoise: DDIM steps 5 to 15 of 50


def prompt_coordinates(num_prompts: int, num_frames: int) -> np.ndarray:
  """float64 `[T]`: frame i's place among the prompts, c in [0, P - 1]; the frame's condition
  mixes prompts floor(c) and ceil(c) with weight c - floor(c) on the later one (FreeNoise's
  layout, module docstring)."""
  if num_prompts < 1 or num_prompts > num_frames:
    raise ConfigError(
      f"FreeNoise spreads 1 to num_frames={num_frames} prompts over the video; got {num_prompts}."
    )
  coordinate = np.zeros(num_frames)
  frame = np.arange(num_frames)
  for k in range(1, num_prompts):
    # Ramp k from prompt k - 1 to k around the boundary k T / P, half a segment wide; for
    # P = 2: [floor(3T/8), T - floor(3T/8)), as the authors' code.
    start = (4 * k - 1) * num_frames // (4 * num_prompts)
    end = -((-(4 * k + 1) * num_frames) // (4 * num_prompts))
    ramp = (frame - start) / max(end - start - 1, 1)
    coordinate = np.where(frame >= start, k - 1 + np.clip(ramp, 0.0, 1.0), coordinate)
  return coordinate


def frame_conditions(cond: jnp.ndarray, num_frames: int) -> jnp.ndarray:
  """One condition per frame `[B, T, ...]` from P prompts `[B, P, ...]` (`prompt_coordinates`):
  float conditions (embeddings) interpolated, int ones (tokens) the nearer prompt."""
  coordinate = prompt_coordinates(cond.shape[1], num_frames)
  lower = np.floor(coordinate).astype(np.int32)
  upper = np.minimum(lower + 1, cond.shape[1] - 1)
  weight = coordinate - lower
  if not jnp.issubdtype(cond.dtype, jnp.floating):
    return jnp.take(cond, np.where(weight < 0.5, lower, upper), axis=1)
  weight = jnp.asarray(weight, cond.dtype).reshape((1, -1) + (1,) * (cond.ndim - 2))
  return (1 - weight) * jnp.take(cond, lower, axis=1) + weight * jnp.take(cond, upper, axis=1)


def injection_times(time_grid, injection_steps: tuple[float, float] = INJECTION_STEPS):
  """(low, high): the t range of the solver steps i with `injection_steps[0]` * S <= i <=
  `injection_steps[1]` * S (step 0 at pure noise) on `time_grid` (`VideoSampler.time_grid`:
  `[S + 1]` times or (t_cur, t_next) pairs). The bounds sit halfway to the neighbouring steps'
  times, so float32 times of those steps fall inside. None if no step is inside."""
  first_fraction, last_fraction = injection_steps
  if not 0.0 <= first_fraction <= last_fraction <= 1.0:
    raise ConfigError(
      f"injection_steps must be fractions (first, last) of the solver's steps "
      f"with 0 <= first <= last <= 1; got {injection_steps}."
    )
  t_cur = np.asarray(time_grid[0] if isinstance(time_grid, tuple) else time_grid[:-1], np.float64)
  steps = len(t_cur)
  first = math.ceil(first_fraction * steps - 1e-9)
  last = min(math.floor(last_fraction * steps + 1e-9), steps - 1)
  if first > last:
    return None
  high = 1.0 + 1e-3 if first == 0 else (t_cur[first - 1] + t_cur[first]) / 2
  low = -1e-3 if last == steps - 1 else (t_cur[last] + t_cur[last + 1]) / 2
  return float(low), float(high)


def motion_injection(times: tuple[float, float] | None):
  """A `denoiser_transform`: the wrapped denoiser takes a condition per frame `[B, T, ...]`.
  Frames whose t is inside `times` = (low, high) see their own condition; every other frame
  sees the last frame's (the last prompt). None: no step injects."""
  if times is not None and not times[0] <= times[1]:
    raise ConfigError(f"The injection times must be (low, high) with low <= high; got {times}.")

  def transform(denoise):
    def injected(z, t, cond):
      if cond.ndim < 2 or cond.shape[1] != z.shape[1]:
        raise ShapeError(
          f"Motion injection takes one condition per frame [B, T={z.shape[1]}, "
          f"...]; got {cond.shape}."
        )
      last = jnp.broadcast_to(cond[:, -1:], cond.shape)
      if times is None:
        return denoise(z, t, last)
      t_frames = jnp.broadcast_to(t[:, None] if t.ndim == 1 else t, cond.shape[:2])
      inject = (t_frames >= times[0]) & (t_frames <= times[1])
      inject = inject.reshape(inject.shape + (1,) * (cond.ndim - 2))
      return denoise(z, t, jnp.where(inject, cond, last))

    return injected

  return transform
