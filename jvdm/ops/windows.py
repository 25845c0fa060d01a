"""Overlapping temporal windows: where they start, cutting a video into them, merging back.

Shared by the long-video methods that run a short-clip model on windows of a longer video
(Gen-L-Video's co-denoising, FreeNoise's window fusion, FreeLong's local attention). Windows of
`window` frames start every `stride` frames; if that leaves frames uncovered at the end, one
more window is aligned with the video's end (as diffusers' FreeNoise does), so every frame is
in at least one window. The authors' `get_views` (FreeNoise, FreeLong, Gen-L-Video) stop at
(T - window) // stride + 1 windows, which leaves the last frames in no window (zero attention
output in FreeNoise's fusion) unless the stride divides T - window; where it does, the windows
are the same.
"""

import jax.numpy as jnp
import numpy as np

from jvdm.errors import ConfigError

WEIGHTINGS = ("uniform", "pyramid")


def window_starts(num_frames: int, window: int, stride: int) -> tuple[int, ...]:
  """First frames of the windows covering `[0, num_frames)`."""
  if window < 1 or window > num_frames:
    raise ConfigError(
      f"A window of {window} frames does not fit a video of {num_frames} frames "
      f"(expected 1 <= window <= {num_frames})."
    )
  if stride < 1 or stride > window:
    raise ConfigError(
      f"The window stride must be in [1, window={window}] so that windows "
      f"overlap or touch; got {stride}."
    )
  starts = list(range(0, num_frames - window + 1, stride))
  if starts[-1] + window < num_frames:
    starts.append(num_frames - window)
  return tuple(starts)


def window_weights(window: int, weighting: str = "uniform") -> np.ndarray:
  """`[window]` per-frame weights of a window's contribution when windows are merged.

  "uniform": every frame 1 (Gen-L-Video's average, the least-squares merge of its eq. 5);
  "pyramid": rising to the window's middle and falling after (diffusers' FreeNoise), so a
  frame is led by the windows it sits in the middle of.
  """
  if weighting == "uniform":
    return np.ones(window, np.float32)
  if weighting == "pyramid":
    rise = np.arange(1, (window + 1) // 2 + 1, dtype=np.float32)
    return np.concatenate([rise, rise[::-1][window % 2 :]])
  raise ConfigError(f"Unknown window weighting {weighting!r}; expected one of {WEIGHTINGS}.")


def _frame_indices(starts: tuple[int, ...], window: int) -> np.ndarray:
  return np.asarray(starts)[:, None] + np.arange(window)[None, :]  # [W, window]


def extract_windows(
  x: jnp.ndarray, starts: tuple[int, ...], window: int, axis: int = 1
) -> jnp.ndarray:
  """`x [..., T, ...]` -> `[..., W, window, ...]`: the windows' frames along `axis`."""
  return jnp.take(x, _frame_indices(starts, window), axis=axis)


def merge_windows(
  windows: jnp.ndarray, starts: tuple[int, ...], num_frames: int, weights: np.ndarray | None = None
) -> jnp.ndarray:
  """`[B, W, window, ...]` -> `[B, T, ...]`: each frame the weighted mean of its windows."""
  window = windows.shape[2]
  if weights is None:
    weights = np.ones(window, np.float32)
  index = _frame_indices(starts, window).reshape(-1)
  flat = windows.reshape((windows.shape[0], -1) + windows.shape[3:])
  per_frame = jnp.asarray(np.tile(weights, len(starts)), flat.dtype)
  per_frame = per_frame.reshape((1, -1) + (1,) * (flat.ndim - 2))
  total = jnp.zeros((flat.shape[0], num_frames) + flat.shape[2:], flat.dtype)
  total = total.at[:, index].add(flat * per_frame)
  norm = np.zeros(num_frames, np.float32)
  np.add.at(norm, index, np.tile(weights, len(starts)))
  return total / jnp.asarray(norm, flat.dtype).reshape((1, -1) + (1,) * (flat.ndim - 2))
