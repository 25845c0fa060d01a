"""FreeNoise's multi-prompt generation with motion injection (Qiu et al. 2024, sec. 3.4).

A long video gets one prompt per window. Each frame takes the prompt of the window whose
centre is nearest (`frame_conditions`). Switching prompts for the whole trajectory breaks the
video's layout. The layout is settled at high noise and the fine detail at low noise. So the
frames' own prompts enter only at middle noise levels: while a frame's t lies in
`injection_range`, it is conditioned on its own prompt; at every other t, all frames are
conditioned on the first window's prompt (`motion_injection`).

FreeNoise injects in the cross-attention of the UNet's decoder only. A jvdm DiT has no decoder,
so the condition reaches every block. `injection_range` is in jvdm's t in [0, 1]; its default is
jvdm's choice, not a number taken from the paper.
"""

import jax.numpy as jnp

from jvdm.errors import ConfigError
from jvdm.samplers.long.windows import window_starts

DEFAULT_INJECTION_RANGE = (0.2, 0.8)


def frame_conditions(cond: jnp.ndarray, num_frames: int, window: int,
                     stride: int) -> jnp.ndarray:
  """One condition per frame `[B, T, ...]` from one per window `[B, W, ...]`: each frame takes
  the condition of the window whose centre is nearest (the earlier window on a tie)."""
  starts = jnp.asarray(window_starts(num_frames, window, stride))
  centres = starts + (window - 1) / 2
  nearest = jnp.argmin(jnp.abs(jnp.arange(num_frames)[:, None] - centres[None]), axis=1)
  return jnp.take(cond, nearest, axis=1)


def motion_injection(injection_range: tuple[float, float] = DEFAULT_INJECTION_RANGE):
  """A `denoiser_transform`: the wrapped denoiser takes a condition per frame `[B, T, ...]`.
  Frames whose t is inside `injection_range` see their own condition. Every other frame sees
  the first frame's condition."""
  low, high = injection_range
  if not 0.0 <= low <= high <= 1.0:
    raise ConfigError(f"injection_range must be (low, high) with 0 <= low <= high <= 1; got "
                      f"{injection_range}.")

  def transform(denoise):
    def injected(z, t, cond):
      t_frames = jnp.broadcast_to(t[:, None] if t.ndim == 1 else t, cond.shape[:2])
      inject = (t_frames >= low) & (t_frames <= high)
      inject = inject.reshape(inject.shape + (1,) * (cond.ndim - 2))
      return denoise(z, t, jnp.where(inject, cond, cond[:, :1]))
    return injected

  return transform
