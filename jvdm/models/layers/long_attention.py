"""Training-free long-video attention: FreeNoise's window fusion and FreeLong's SpectralBlend.

A backbone trained on clips of `window` (latent) frames meets a longer video at sampling time
through the layers that attend across frames: temporal attention, and joint (UNet) or full and
windowed (DiT) attention. Two remedies change only those layers, not the params:

freenoise (Qiu et al. 2023, "FreeNoise: Tuning-Free Longer Video Diffusion via Noise
  Rescheduling", sec. 3.3, window-based attention fusion): attention runs on overlapping windows
  of `window` frames starting every `stride` frames, with frame positions relative to the
  window, and each frame's output is the weighted mean of its windows' outputs.
freelong (Lu et al. 2024, "FreeLong: Training-Free Long Video Generation with SpectralBlend
  Temporal Attention", sec. 3.2): the layer attends twice, globally (all frames) and locally
  (frames near each other, `band_mask`), and the 3D spectrum of the output takes its low
  frequencies from the global pass and its high ones from the local pass (`spectral_blend`).

FreeLong as the authors' code (aniki-ly/FreeLong) runs it, and what jvdm does:
- Local mask: frame i attends to frames [i - window // 2, i + window // 2], and a window cut by
  the video's ends is shifted inwards to `window` frames (LaVie example,
  `BasicTransformerBlock.get_adjusted_local_mask`, window 16): so every frame sees the training
  length, `window + 1` frames inside the video for an even window, `window` at the ends. jvdm's
  default, local_mask="adjusted". The VideoCrafter2 example builds the mask without the shift
  (`CrossAttention.get_local_mask`: fewer frames at the ends); that is local_mask="strict", jvdm's
  earlier default.
- Low-pass filter: FreeInit's Gaussian (`freelong_utils.gaussian_low_pass_filter`, d_s = d_t =
  0.25): exp(-((f_t / d_t)^2 + (f_h / d_s)^2 + (f_w / d_s)^2) / 2) with f the frequency as a
  fraction of Nyquist on the centred grid `2 i / n - 1` (i after fftshift; for an odd n that grid
  sits half a bin off centre, and jvdm keeps it so). jvdm's default, low_pass="gaussian", with
  the cutoffs as d_t and d_s. low_pass="box" (jvdm's earlier default) passes frequencies whose
  magnitude is at most the cutoff along each axis; it makes the limits exact (cutoff 1: all
  global; 0: all local), which the Gaussian never is.
- Not matched: both examples skip the blend at the U-Net's highest resolution (40x64 latents:
  local attention only) and blend both attention layers of a temporal block; jvdm blends every
  long-attention layer the same way, as the paper describes.

Set it on a trained model for sampling: `model.clone(long_attention=LongAttention(...))`. A
video of at most `window` frames gets the plain attention.
"""

import dataclasses
from typing import Callable

import jax.numpy as jnp

from jvdm.errors import ConfigError
from jvdm.ops.freelong import LOCAL_MASKS, LOW_PASSES
from jvdm.ops.windows import (
  WEIGHTINGS,
  extract_windows,
  merge_windows,
  window_starts,
  window_weights,
)
from jvdm.parallel.context_attention import attention

METHODS = ("freenoise", "freelong")


@dataclasses.dataclass(frozen=True)
class LongAttention:
  """How the cross-frame attention layers treat videos longer than `window` frames.

  Attributes:
    method: "freenoise" (window fusion) or "freelong" (SpectralBlend).
    window: the model's training length in (latent) frames.
    stride: freenoise: frames between the starts of consecutive windows.
    weighting: freenoise: `window_weights` kind ("pyramid" or "uniform").
    temporal_cutoff: freelong: the low-pass cutoff along time, as a fraction of the Nyquist
      frequency: the Gaussian's standard deviation (FreeLong's d_t), or the box's edge
      (0 = everything from the local pass; with the box, 1 = everything from the global pass).
    spatial_cutoff: freelong: the same along rows and columns (FreeLong's d_s).
    local_mask: freelong: "adjusted" (the authors' LaVie code, every frame sees a full window)
      or "strict" (their VideoCrafter2 code, cut at the video's ends); see `band_mask`.
    low_pass: freelong: "gaussian" (the authors' filter) or "box"; see `low_pass_filter`.
  """

  method: str
  window: int = 16
  stride: int = 4
  weighting: str = "pyramid"
  temporal_cutoff: float = 0.25
  spatial_cutoff: float = 0.25
  local_mask: str = "adjusted"
  low_pass: str = "gaussian"

  def __post_init__(self):
    if self.method not in METHODS:
      raise ConfigError(
        f"Unknown long-attention method {self.method!r}; expected one of {METHODS}."
      )
    if self.window < 1:
      raise ConfigError(f"The long-attention window must be >= 1 frame, got {self.window}.")
    if not 1 <= self.stride <= self.window:
      raise ConfigError(
        f"The long-attention stride must be in [1, window={self.window}], got {self.stride}."
      )
    if self.weighting not in WEIGHTINGS:
      raise ConfigError(
        f"Unknown window weighting {self.weighting!r}; expected one of {WEIGHTINGS}."
      )
    if self.local_mask not in LOCAL_MASKS:
      raise ConfigError(
        f"Unknown FreeLong local mask {self.local_mask!r}; expected one of {LOCAL_MASKS}."
      )
    if self.low_pass not in LOW_PASSES:
      raise ConfigError(
        f"Unknown FreeLong low-pass filter {self.low_pass!r}; expected one of {LOW_PASSES}."
      )
    for name in ("temporal_cutoff", "spatial_cutoff"):
      if not 0.0 <= getattr(self, name) <= 1.0:
        raise ConfigError(
          f"The long-attention {name} must be in [0, 1], got {getattr(self, name)}."
        )

  def applies(self, num_frames: int) -> bool:
    """Whether a video of `num_frames` frames is longer than the window (else: plain attention)."""
    return num_frames > self.window


def window_fused_attention(
  query: jnp.ndarray,
  key: jnp.ndarray,
  value: jnp.ndarray,
  window: int,
  stride: int,
  weighting: str = "pyramid",
  *,
  per_position: bool = False,
  frame_mask: jnp.ndarray | None = None,
  rotate: Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray] | None = None,
  implementation: str | None = None,
  context_parallel: str | None = None,
) -> jnp.ndarray:
  """FreeNoise's window-based attention fusion (sec. 3.3) over `[B, T, S, N, D]` q/k/v.

  T frames of S tokens each, N heads. The overlapping windows of `window` frames
  (`window_starts(T, window, stride)`) are folded into the batch, so one attention call serves
  them all, and a token attends only to tokens of its window's frames. Each frame's output is
  the mean of its windows' outputs weighted by `window_weights(window, weighting)`.

  Args:
    query, key, value: `[B, T, S, N, D]`, keys and queries without frame positions.
    window, stride, weighting: the windows (`jvdm.ops.windows`).
    per_position: temporal attention: token s attends only to token s of the window's frames
      (the S positions become heads); False: every token of the window's frames (joint/full).
    frame_mask: `[window, window]` boolean, True where frame i of a window may attend to its
      frame j (causal or windowed layers); the same for every window. None = all.
    rotate: `rotate(x [B', window, S, N, D], frames [window]) -> x`, the position embedding,
      called with window-relative frames 0..window-1, so positions stay within the training
      length. None = no positions.
    implementation, context_parallel: passed to `jvdm.parallel.context_attention.attention`.

  Returns:
    `[B, T, S, N, D]`.
  """
  batch, num_frames, tokens, heads, head_dim = query.shape
  starts = window_starts(num_frames, window, stride)

  def fold(a):  # [B, T, S, N, D] -> [B * W, window, S, N, D]
    return extract_windows(a, starts, window).reshape((-1, window) + a.shape[2:])

  query, key, value = fold(query), fold(key), fold(value)
  if rotate is not None:
    frames = jnp.arange(window)
    query, key = rotate(query, frames), rotate(key, frames)
  if per_position:  # the window's frames are the sequence; (position, head) pairs are heads
    sequence = (window, tokens * heads, head_dim)
    mask = frame_mask
  else:  # all tokens of the window's frames are the sequence
    sequence = (window * tokens, heads, head_dim)
    mask = (
      None
      if frame_mask is None
      else jnp.repeat(jnp.repeat(jnp.asarray(frame_mask), tokens, axis=0), tokens, axis=1)
    )
  out = attention(
    *(a.reshape((-1,) + sequence) for a in (query, key, value)),
    mask,
    implementation,
    context_parallel,
  )
  out = out.reshape(batch, len(starts), window, tokens, heads, head_dim)
  return merge_windows(out, starts, num_frames, window_weights(window, weighting))
