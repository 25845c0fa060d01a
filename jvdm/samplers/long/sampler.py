"""Long videos from a short-clip model, by any method, behind one `sample` call.

`LongVideoSampler(base, model, method, window, ...)` generates videos longer than the
`window` frames the model was trained on, with the solver settings of `base` (a
`VideoSampler`):

  one_pass       the whole length in one pass (baseline).
  chunks         independent clips of `window` frames, concatenated (baseline).
  freenoise      FreeNoise: rescheduled noise and window-fused attention; optionally one
                 condition (prompt) per window, with motion injection.
  freelong       FreeLong: SpectralBlend of global and local attention.
  gen_l_video    Gen-L-Video: co-denoising of overlapping windows, optionally one condition
                 (prompt) per window.
  fifo           FIFO-Diffusion: diagonal denoising of a queue (from a base clip).
  autoregressive clip-by-clip extension, each clip continuing the last `context_frames`
                 frames (for a causal DiT with a KV cache, see `CausalVideoSampler`).

Every method runs as one jitted function per batch shape, with the params as arguments.
"""

import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jvdm.errors import ConfigError, ShapeError
from jvdm.models.dit import VideoDiT
from jvdm.models.layers.long_attention import LongAttention
from jvdm.samplers.driver import split_per_sample
from jvdm.samplers.long.co_denoising import co_denoising
from jvdm.samplers.long.extension import MODES, extend
from jvdm.samplers.long.fifo import FIFODiffusion
from jvdm.samplers.long.motion_injection import (DEFAULT_INJECTION_RANGE, frame_conditions,
                                                motion_injection)
from jvdm.samplers.long.noise_rescheduling import rescheduled_noise_per_sample
from jvdm.samplers.long.windows import window_starts, window_weights
from jvdm.samplers.video_sampler import VideoSampler, sample_in_batches

METHODS = ("one_pass", "chunks", "freenoise", "freelong", "gen_l_video", "fifo",
           "autoregressive")


@dataclasses.dataclass(frozen=True)
class LongVideoSampler:
  """Samples videos of any length >= `window` frames (module docstring).

  Attributes:
    base: the short-clip sampler (solver, steps, guidance); its `apply_fn` is `model.apply`.
    model: the trained network (freenoise and freelong clone it with `long_attention`).
    method: one of `METHODS`.
    window: the model's training length, in frames.
    stride: frames between window starts (freenoise, gen_l_video); default window // 2.
    weighting: how overlapping windows merge: "pyramid" or "uniform".
    temporal_cutoff, spatial_cutoff: freelong's low-pass cutoffs.
    num_partitions, frames_per_level, lookahead, tail: fifo's settings (`FIFODiffusion`);
      fifo runs num_partitions * window / frames_per_level steps per frame, not base.num_steps.
    context_frames: autoregressive: given frames per later clip; default window // 2.
    extension_mode: autoregressive: "clean" or "replace" (`jvdm.samplers.long.extension`).
    per_window_condition: gen_l_video, freenoise: the condition holds one entry per window,
      `[N, W, ...]` (freenoise: each frame takes its nearest window's, `motion_injection`).
    injection_range: freenoise with per_window_condition: the t range of motion injection.
  """

  base: VideoSampler
  model: nn.Module
  method: str
  window: int
  stride: int | None = None
  weighting: str = "pyramid"
  temporal_cutoff: float = 0.25
  spatial_cutoff: float = 0.25
  num_partitions: int = 4
  frames_per_level: int = 1
  lookahead: bool = True
  tail: str = "gaussian"
  context_frames: int | None = None
  extension_mode: str = "clean"
  per_window_condition: bool = False
  injection_range: tuple[float, float] = DEFAULT_INJECTION_RANGE

  def __post_init__(self):
    if self.method not in METHODS:
      raise ConfigError(f"Unknown long-video method {self.method!r}; expected one of {METHODS}.")
    window_starts(self.window, self.window, self.stride_frames)  # window >= 1, stride in range
    window_weights(self.window, self.weighting)  # a known weighting
    if self.window % self.temporal_patch:
      raise ConfigError(f"The window of {self.window} frames must be a multiple of the model's "
                        f"temporal patch {self.temporal_patch}.")
    if self.method in ("freenoise", "freelong"):
      self.long_attention  # pylint: disable=pointless-statement  # validates its settings
    if self.method == "fifo":
      self.fifo  # pylint: disable=pointless-statement
    if self.method == "autoregressive" and self.extension_mode not in MODES:
      raise ConfigError(f"Unknown extension mode {self.extension_mode!r}; expected one of "
                        f"{MODES}.")
    if self.per_window_condition and self.method not in ("gen_l_video", "freenoise"):
      raise ConfigError("A condition per window (per_window_condition) is Gen-L-Video's or "
                        f"FreeNoise's multi-prompt generation; method {self.method!r} takes one "
                        "per video.")
    if self.per_window_condition and self.method == "freenoise":
      motion_injection(self.injection_range)  # validates the range

  @property
  def stride_frames(self) -> int:
    return (self.window // 2 or 1) if self.stride is None else self.stride

  @property
  def temporal_patch(self) -> int:
    """Frames per attention position (a DiT's temporal patch; 1 for the UNet)."""
    return int(self.model.patch_size[0]) if isinstance(self.model, VideoDiT) else 1

  @functools.cached_property
  def long_attention(self) -> LongAttention:
    """The attention option of freenoise/freelong, in the model's attention frames."""
    if self.stride_frames % self.temporal_patch:
      raise ConfigError(f"The stride of {self.stride_frames} frames must be a multiple of the "
                        f"model's temporal patch {self.temporal_patch}.")
    return LongAttention(self.method, self.window // self.temporal_patch,
                         self.stride_frames // self.temporal_patch, self.weighting,
                         self.temporal_cutoff, self.spatial_cutoff)

  @functools.cached_property
  def fifo(self) -> FIFODiffusion:
    return FIFODiffusion(self.window, self.num_partitions, self.frames_per_level, self.lookahead,
                         self.tail, sampler=self.base.sampler, eta=self.base.eta,
                         clip_x0=self.base.clip_x0)

  @functools.cached_property
  def _video_sampler(self) -> VideoSampler:
    """The `VideoSampler` of the methods that sample the whole video in one solver run."""
    replace = functools.partial(dataclasses.replace, self.base)
    if self.method == "freenoise":
      initial_noise = lambda keys, shape: rescheduled_noise_per_sample(
          keys, shape[0], shape[1:], self.window, self.stride_frames)
      return replace(apply_fn=self.model.clone(long_attention=self.long_attention).apply,
                     initial_noise=initial_noise,
                     denoiser_transform=(motion_injection(self.injection_range)
                                         if self.per_window_condition else None))
    if self.method == "freelong":
      return replace(apply_fn=self.model.clone(long_attention=self.long_attention).apply)
    if self.method == "gen_l_video":
      return replace(denoiser_transform=lambda denoise: co_denoising(
          denoise, self.window, self.stride_frames, self.weighting,
          per_window_cond=self.per_window_condition))
    return self.base

  def sample_batch(self, params: Any, keys: jax.Array, cond: Any,
                   video_shape: tuple[int, ...]) -> jnp.ndarray:
    """Traceable: `[B, *video_shape]` videos from `[B]` keys (and a `[B, ...]` condition, or
    `[B, W, ...]` with `per_window_condition`); `sample` jits it with the params as arguments."""
    num_frames, frame_shape = video_shape[0], tuple(video_shape[1:])
    if self.method == "chunks":  # clip c of a video from fold_in(its key, c)
      clips = -(-num_frames // self.window)
      clip_keys = jax.vmap(lambda key: jax.vmap(lambda c: jax.random.fold_in(key, c))(
          jnp.arange(clips)))(keys).reshape(-1)
      clip_cond = None if cond is None else jax.tree.map(
          lambda leaf: jnp.repeat(leaf, clips, axis=0), cond)
      videos = self.base.sample_batch(params, clip_keys, clip_cond, (self.window,) + frame_shape)
      return videos.reshape((keys.shape[0], clips * self.window) + frame_shape)[:, :num_frames]
    if self.method == "freenoise" and self.per_window_condition:
      cond = frame_conditions(cond, num_frames, self.window, self.stride_frames)
    if self.method not in ("fifo", "autoregressive"):
      return self._video_sampler.sample_batch(params, keys, cond, tuple(video_shape))
    denoise = self.base.denoiser(params, cond is not None)
    if self.method == "fifo":
      base_keys, keys = split_per_sample(keys)
      base_clip = self.base.sample_batch(params, base_keys, cond, (self.window,) + frame_shape)
      return self.fifo.sample(denoise, self.base.process, keys, base_clip, num_frames, cond)
    return extend(denoise, self.base.process, keys, num_frames, self.window,
                  self.context_frames or self.window // 2, frame_shape,
                  sampler=self.base.sampler, num_steps=self.base.num_steps, eta=self.base.eta,
                  clip_x0=self.base.clip_x0, mode=self.extension_mode,
                  frame_stagger=self.base.frame_stagger, cond=cond, jit=False)

  @functools.cached_property
  def jitted_sample_batch(self):
    """`sample_batch` under `jax.jit` (video_shape static)."""
    return jax.jit(self.sample_batch, static_argnums=3)

  def num_windows(self, num_frames: int) -> int:
    """Windows of a `num_frames` video (one condition each with `per_window_condition`)."""
    return len(window_starts(num_frames, self.window, self.stride_frames))

  def sample(self, params: Any, seed: int, num_videos: int, video_shape: tuple[int, int, int, int],
             batch_size: int = 8, progress: bool = True,
             condition: np.ndarray | None = None) -> np.ndarray:
    """`[num_videos, T, H, W, C]` videos (float32, about [-1, 1]); arguments as
    `VideoSampler.sample`. Video i depends only on (seed, i)."""
    condition = self.base.check_request(num_videos, batch_size, video_shape, condition)
    num_frames, frame_shape = int(video_shape[0]), tuple(int(s) for s in video_shape[1:])
    if num_frames < self.window:
      raise ConfigError(f"A window of {self.window} frames is longer than the video of "
                        f"{num_frames} frames; sample it directly (method 'one_pass').")
    if num_frames % self.temporal_patch:
      raise ConfigError(f"num_frames={num_frames} must be a multiple of the model's temporal "
                        f"patch {self.temporal_patch}.")
    if self.per_window_condition:
      windows = self.num_windows(num_frames)
      if condition.ndim < 2 or condition.shape[1] != windows:
        raise ShapeError(
            f"Got {condition.shape[1] if condition.ndim >= 2 else 'no'} prompts per video for "
            f"the {windows} windows of {self.window} frames (stride {self.stride_frames}) of a "
            f"{num_frames}-frame video: give one per window, condition [N, {windows}, ...].")
    if self.method == "fifo":
      self.fifo.check_length(num_frames)
    video_shape = (num_frames,) + frame_shape
    sample_batch = lambda keys, cond: self.jitted_sample_batch(params, keys, cond, video_shape)
    return sample_in_batches(sample_batch, seed, num_videos, batch_size, condition, progress)
