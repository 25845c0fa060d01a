"""Temporal co-denoising (Gen-L-Video, Wang et al. 2023, sec. 3.2, eq. 5).

A model trained on clips of `window` frames denoises a longer video window by window: the
video is cut into overlapping windows (`windows.window_starts`), every window is denoised on
its own, and each frame's estimate is the weighted mean of its windows' estimates. Eq. 5 picks
the merged step as the least-squares fit of the windows' steps,
  argmin_v sum_i || W_i * (F_i(v) - v_i) ||^2  =>  v = sum_i F_i^T(W_i v_i) / sum_i F_i^T(W_i),
with F_i cutting window i out of the video: a per-frame weighted average.

Here the windows' clean estimates x0 are merged, so the result is again a denoiser that any
solver runs unchanged. For DDIM and Euler this is exactly eq. 5 on the steps: at a fixed
(z, t), x_next = alpha_s x0 + sigma_s (z - alpha_t x0) / sigma_t is affine in x0, and the
weights of a frame sum to one, so the mean of the windows' steps is the step of the mean x0.

The authors' code (G-U-N/Gen-L-Video, `glv/pipelines/pipeline_tuning_free.py:562-597`) runs
the scheduler's step on each window and averages the windows' steps with equal weights
(value / count): weighting="uniform", the default here and in `LongVideoSampler`.
"pyramid" (diffusers' FreeNoise weights) is jvdm's named alternative. One difference is left:
with a stochastic step (DDIM eta > 0, DDPM), the authors average steps that drew their noise
per window, which shrinks the noise of frames in several windows; jvdm merges x0 and draws one
noise per frame, so every frame gets the step's full noise.
"""

from typing import Any, Optional

import jax
import jax.numpy as jnp

from jvdm.errors import ConfigError, ShapeError
from jvdm.samplers.denoiser import Denoiser
from jvdm.ops.windows import extract_windows, merge_windows, window_starts, window_weights


def _denoise_windows(denoise: Denoiser, inputs: Any, window_batch: Optional[int]) -> jnp.ndarray:
  """Runs `denoise` on `inputs` = (z, t, cond), every leaf `[W, B, ...]` (window-major).

  The windows are folded into the batch axis: one call on `[W * B, ...]`, or with
  `window_batch` = g, `lax.map` over groups of g windows (the last group padded with copies of
  the last window). Returns the x0 estimates `[W, B, window, ...]`.
  """
  count, batch = inputs[0].shape[:2]
  group = count if window_batch is None else min(window_batch, count)
  groups = -(-count // group)
  pad = groups * group - count

  def fold(leaf):
    if pad:
      leaf = jnp.concatenate([leaf, jnp.repeat(leaf[-1:], pad, axis=0)])
    return leaf.reshape((groups, group * batch) + leaf.shape[2:])

  folded = jax.tree.map(fold, inputs)
  call = lambda args: denoise(*args)
  if groups == 1:
    x0 = call(jax.tree.map(lambda leaf: leaf[0], folded))[None]
  else:
    x0 = jax.lax.map(call, folded)
  return x0.reshape((groups * group, batch) + x0.shape[2:])[:count]


def co_denoising(
  denoise: Denoiser,
  window: int,
  stride: int,
  weighting: str = "uniform",
  window_batch: Optional[int] = None,
  per_window_cond: bool = False,
) -> Denoiser:
  """A denoiser for videos of any length >= `window`, from one trained on `window` frames.

  Args:
    denoise: the short-clip denoiser `(z [B, window, H, W, C], t [B] | [B, window], cond)`.
    window: frames per window (the model's training length).
    stride: frames between window starts, in [1, window]; windows overlap by window - stride.
      A last window is aligned with the video's end if the stride leaves frames uncovered.
    weighting: "uniform" (Gen-L-Video's average) or "pyramid" (frames weigh most in the
      windows they sit in the middle of; diffusers' FreeNoise), see `window_weights`.
    window_batch: None denoises all windows in one batched call; g runs `lax.map` over groups
      of g windows, so memory holds g windows' activations instead of all.
    per_window_cond: False: `cond` is per video (leaves `[B, ...]`), given to every window.
      True: `cond` holds one condition per window (leaves `[B, W, ...]`, W =
      `len(window_starts(T, window, stride))`): Gen-L-Video's multi-text generation, each
      segment with its own prompt.

  Returns:
    `long_denoise(z [B, T, H, W, C], t [B] | [B, T], cond) -> x0 [B, T, H, W, C]`.
  """
  window_starts(window, window, stride)  # window >= 1, 1 <= stride <= window
  weights = window_weights(window, weighting)
  if window_batch is not None and (not isinstance(window_batch, int) or window_batch < 1):
    raise ConfigError(f"window_batch must be None or a positive integer, got {window_batch!r}.")

  def long_denoise(z: jnp.ndarray, t: jnp.ndarray, cond: Optional[Any] = None) -> jnp.ndarray:
    if z.ndim < 2:
      raise ShapeError(f"Expected a video [B, T, ...], got shape {z.shape}.")
    batch, frames = z.shape[:2]
    starts = window_starts(frames, window, stride)
    count = len(starts)
    t = jnp.asarray(t)
    if t.shape not in ((batch,), (batch, frames)):
      raise ShapeError(
        f"Timesteps must be [B]=({batch},) or [B, T]=({batch}, {frames}) for a "
        f"video of shape {z.shape}; got {t.shape}."
      )
    to_windows = lambda a: jnp.moveaxis(extract_windows(a, starts, window), 1, 0)

    def window_cond(leaf):
      leaf = jnp.asarray(leaf)
      if not per_window_cond:
        return jnp.broadcast_to(leaf[None], (count,) + leaf.shape)
      if leaf.ndim < 2 or leaf.shape[:2] != (batch, count):
        raise ShapeError(
          f"per_window_cond: got prompts whose count doesn't match the segments: a condition "
          f"of shape {leaf.shape}, expected [B, W, ...] = ({batch}, {count}, ...) for the "
          f"{count} windows of {window} frames (stride {stride}) of a {frames}-frame video."
        )
      return jnp.moveaxis(leaf, 1, 0)

    times = jnp.broadcast_to(t, (count, batch)) if t.ndim == 1 else to_windows(t)
    inputs = (to_windows(z), times, jax.tree.map(window_cond, cond))
    x0 = _denoise_windows(denoise, inputs, window_batch)  # [W, B, window, ...]
    return merge_windows(jnp.moveaxis(x0, 0, 1), starts, frames, weights)

  return long_denoise
