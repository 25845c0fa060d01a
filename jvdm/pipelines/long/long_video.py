"""Long videos from a short-clip model, by any method, behind one `sample` call.

`LongVideoSampler(base, model, method, window, ...)` generates videos longer than the
`window` frames the model was trained on, with the solver settings of `base` (a
`VideoSampler`):

  one_pass       the whole length in one pass (baseline).
  chunks         independent clips of `window` frames, concatenated (baseline).
  freenoise      FreeNoise: rescheduled noise and window-fused attention; optionally several
                 prompts spread over the video, with motion injection.
  freelong       FreeLong: SpectralBlend of global and local attention.
  gen_l_video    Gen-L-Video: co-denoising of overlapping windows, optionally one condition
                 (prompt) per window.
  fifo           FIFO-Diffusion: diagonal denoising of a queue (from a base clip).
  autoregressive clip-by-clip extension, each clip continuing the last `context_frames`
                 frames (for a causal DiT with a KV cache, see `CausalVideoSampler`).

Each method runs with its authors' settings unless told otherwise:
- weighting (how overlapping windows merge): FreeNoise's pyramid (`generate_weight_sequence`),
  Gen-L-Video's uniform average (`pipeline_tuning_free.py:595-597`).
- FIFO: its own S-step level grid of the base sampler's spacing, DDIM eta 1 (`fifo_eta`), and
  a base clip sampled with those S steps and eta on one shared time per step
  (`jvdm.pipelines.long.fifo`).
- FreeNoise with several prompts: motion injection during the steps `injection_steps`
  (`jvdm.pipelines.long.freenoise`).
FreeNoise, FreeLong and Gen-L-Video were designed for one shared time per step: the base
sampler's `frame_stagger` (per-frame times, for models trained with per-frame noise) changes
them, and is the caller's choice.

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
from jvdm.pipelines.long.gen_l_video import co_denoising
from jvdm.pipelines.long.extension import MODES, extend
from jvdm.pipelines.long.fifo import FIFODiffusion, grid_levels
from jvdm.pipelines.long.freenoise import (
  INJECTION_STEPS,
  frame_conditions,
  injection_times,
  motion_injection,
  rescheduled_noise_per_sample,
)
from jvdm.ops.windows import window_starts, window_weights
from jvdm.pipelines.video_sampler import VideoSampler, sample_in_batches

METHODS = ("one_pass", "chunks", "freenoise", "freelong", "gen_l_video", "fifo", "autoregressive")


@dataclasses.dataclass(frozen=True)
class LongVideoSampler:
  """Samples videos of any length >= `window` frames (module docstring).

  Attributes:
    base: the short-clip sampler (solver, steps, guidance); its `apply_fn` is `model.apply`.
    model: the trained network (freenoise and freelong clone it with `long_attention`).
    method: one of `METHODS`.
    window: the model's training length, in frames.
    stride: frames between window starts (freenoise, gen_l_video); default window // 2.
    weighting: how overlapping windows merge: "pyramid" or "uniform"; None = the method's
      authors' (freenoise "pyramid", gen_l_video "uniform").
    temporal_cutoff, spatial_cutoff, local_mask, low_pass: freelong's SpectralBlend settings
      (`jvdm.models.layers.long_attention.LongAttention`).
    num_partitions, frames_per_level, lookahead, tail: fifo's settings (`FIFODiffusion`);
      fifo runs num_partitions * window / frames_per_level steps per frame, not base.num_steps,
      on the base sampler's spacing.
    fifo_eta: fifo's DDIM eta; None = the authors' 1 with the "ddim" sampler (0 with the other
      single-step samplers, which have no eta).
    context_frames: autoregressive: given frames per later clip; default window // 2.
    extension_mode: autoregressive: "clean" or "replace" (`jvdm.pipelines.long.extension`).
    per_window_condition: gen_l_video: the condition holds one entry per window, `[N, W, ...]`;
      freenoise: it holds P >= 1 prompts `[N, P, ...]` spread over the video (FreeNoise's
      multi-prompt layout, `freenoise.frame_conditions`), with motion injection.
    injection_steps: freenoise with per_window_condition: the solver steps, as fractions of
      the base sampler's (step 0 at pure noise), during which every frame sees its own prompt;
      (0.1, 0.3) = FreeNoise's steps 5 to 15 of 50. The last prompt at every other step.
    injection_range: freenoise with per_window_condition: a t range to inject in instead of
      `injection_steps` (jvdm's earlier (0.2, 0.8)); None = use `injection_steps`.
  """

  base: VideoSampler
  model: nn.Module
  method: str
  window: int
  stride: int | None = None
  weighting: str | None = None
  temporal_cutoff: float = 0.25
  spatial_cutoff: float = 0.25
  local_mask: str = "adjusted"
  low_pass: str = "gaussian"
  num_partitions: int = 4
  frames_per_level: int = 1
  lookahead: bool = True
  tail: str = "gaussian"
  fifo_eta: float | None = None
  context_frames: int | None = None
  extension_mode: str = "clean"
  per_window_condition: bool = False
  injection_steps: tuple[float, float] = INJECTION_STEPS
  injection_range: tuple[float, float] | None = None

  def __post_init__(self):
    if self.method not in METHODS:
      raise ConfigError(f"Unknown long-video method {self.method!r}; expected one of {METHODS}.")
    window_starts(self.window, self.window, self.stride_frames)  # window >= 1, stride in range
    window_weights(self.window, self.window_weighting)  # a known weighting
    if self.window % self.temporal_patch:
      raise ConfigError(
        f"The window of {self.window} frames must be a multiple of the model's "
        f"temporal patch {self.temporal_patch}."
      )
    if self.method in ("freenoise", "freelong"):
      self.long_attention  # pylint: disable=pointless-statement  # validates its settings
    if self.method == "fifo":
      self.fifo  # pylint: disable=pointless-statement
    if self.method == "autoregressive" and self.extension_mode not in MODES:
      raise ConfigError(f"Unknown extension mode {self.extension_mode!r}; expected one of {MODES}.")
    if self.per_window_condition and self.method not in ("gen_l_video", "freenoise"):
      raise ConfigError(
        "A condition per window (per_window_condition) is Gen-L-Video's or "
        f"FreeNoise's multi-prompt generation; method {self.method!r} takes one "
        "per video."
      )
    if self.per_window_condition and self.method == "freenoise":
      motion_injection(self.injection_times)  # validates the steps or range

  @property
  def window_weighting(self) -> str:
    """How overlapping windows merge: `weighting`, or the method's authors' choice."""
    if self.weighting is not None:
      return self.weighting
    return "pyramid" if self.method == "freenoise" else "uniform"

  @property
  def injection_times(self) -> tuple[float, float] | None:
    """freenoise: the t range of motion injection (`injection_range`, or the times of the
    `injection_steps` on the base sampler's grid); None = no step injects."""
    if self.injection_range is not None:
      low, high = self.injection_range
      if not 0.0 <= low <= high <= 1.0:
        raise ConfigError(
          f"injection_range must be (low, high) with 0 <= low <= high <= 1; got "
          f"{self.injection_range}."
        )
      return tuple(self.injection_range)
    return injection_times(self.base.time_grid, self.injection_steps)

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
      raise ConfigError(
        f"The stride of {self.stride_frames} frames must be a multiple of the "
        f"model's temporal patch {self.temporal_patch}."
      )
    return LongAttention(
      self.method,
      self.window // self.temporal_patch,
      self.stride_frames // self.temporal_patch,
      self.window_weighting,
      self.temporal_cutoff,
      self.spatial_cutoff,
      self.local_mask,
      self.low_pass,
    )

  @functools.cached_property
  def fifo(self) -> FIFODiffusion:
    return FIFODiffusion(
      self.window,
      self.num_partitions,
      self.frames_per_level,
      self.lookahead,
      self.tail,
      sampler=self.base.sampler,
      eta=self.fifo_eta,
      clip_x0=self.base.clip_x0,
      spacing=self.base.spacing,
      steps_offset=self.base.steps_offset,
    )

  @functools.cached_property
  def fifo_base_sampler(self) -> VideoSampler:
    """The sampler of FIFO's base clip: the authors sample it with the queue's S steps and eta,
    one shared time per step."""
    return dataclasses.replace(
      self.base, num_steps=self.fifo.num_levels, eta=self.fifo.eta, frame_stagger=0.0
    )

  @property
  def fifo_levels(self) -> np.ndarray:
    """FIFO's `[S + 1]` ascending levels: the S-step grid of the base clip's sampler, so the
    queue steps on the grid the base sampler would use with S steps (module docstring)."""
    return grid_levels(self.fifo_base_sampler.time_grid)

  @functools.cached_property
  def _video_sampler(self) -> VideoSampler:
    """The `VideoSampler` of the methods that sample the whole video in one solver run."""
    replace = functools.partial(dataclasses.replace, self.base)
    if self.method == "freenoise":
      initial_noise = lambda keys, shape: rescheduled_noise_per_sample(
        keys, shape[0], shape[1:], self.window, self.stride_frames
      )
      return replace(
        apply_fn=self.model.clone(long_attention=self.long_attention).apply,
        initial_noise=initial_noise,
        denoiser_transform=(
          motion_injection(self.injection_times) if self.per_window_condition else None
        ),
      )
    if self.method == "freelong":
      return replace(apply_fn=self.model.clone(long_attention=self.long_attention).apply)
    if self.method == "gen_l_video":
      return replace(
        denoiser_transform=lambda denoise: co_denoising(
          denoise,
          self.window,
          self.stride_frames,
          self.window_weighting,
          per_window_cond=self.per_window_condition,
        )
      )
    return self.base

  def sample_batch(
    self, params: Any, keys: jax.Array, cond: Any, video_shape: tuple[int, ...]
  ) -> jnp.ndarray:
    """Traceable: `[B, *video_shape]` videos from `[B]` keys (and a `[B, ...]` condition, or
    `[B, W, ...]` / `[B, P, ...]` with `per_window_condition`); `sample` jits it with the params
    as arguments."""
    num_frames, frame_shape = video_shape[0], tuple(video_shape[1:])
    if self.method == "chunks":  # clip c of a video from fold_in(its key, c)
      clips = -(-num_frames // self.window)
      clip_keys = jax.vmap(
        lambda key: jax.vmap(lambda c: jax.random.fold_in(key, c))(jnp.arange(clips))
      )(keys).reshape(-1)
      clip_cond = (
        None if cond is None else jax.tree.map(lambda leaf: jnp.repeat(leaf, clips, axis=0), cond)
      )
      videos = self.base.sample_batch(params, clip_keys, clip_cond, (self.window,) + frame_shape)
      return videos.reshape((keys.shape[0], clips * self.window) + frame_shape)[:, :num_frames]
    if self.method == "freenoise" and self.per_window_condition:
      cond = frame_conditions(cond, num_frames)
    if self.method not in ("fifo", "autoregressive"):
      return self._video_sampler.sample_batch(params, keys, cond, tuple(video_shape))
    denoise = self.base.denoiser(params, cond is not None)
    if self.method == "fifo":
      base_keys, keys = split_per_sample(keys)
      base_clip = self.fifo_base_sampler.sample_batch(
        params, base_keys, cond, (self.window,) + frame_shape
      )
      return self.fifo.sample(
        denoise, self.base.process, keys, base_clip, num_frames, cond, levels=self.fifo_levels
      )
    return extend(
      denoise,
      self.base.process,
      keys,
      num_frames,
      self.window,
      self.context_frames or self.window // 2,
      frame_shape,
      sampler=self.base.sampler,
      num_steps=self.base.num_steps,
      eta=self.base.eta,
      clip_x0=self.base.clip_x0,
      mode=self.extension_mode,
      frame_stagger=self.base.frame_stagger,
      time_power=self.base.time_power,
      cond=cond,
      jit=False,
    )

  @functools.cached_property
  def jitted_sample_batch(self):
    """`sample_batch` under `jax.jit` (video_shape static)."""
    return jax.jit(self.sample_batch, static_argnums=3)

  def num_windows(self, num_frames: int) -> int:
    """Windows of a `num_frames` video (one condition each with `per_window_condition`)."""
    return len(window_starts(num_frames, self.window, self.stride_frames))

  def sample(
    self,
    params: Any,
    seed: int,
    num_videos: int,
    video_shape: tuple[int, int, int, int],
    batch_size: int = 8,
    progress: bool = True,
    condition: np.ndarray | None = None,
  ) -> np.ndarray:
    """`[num_videos, T, H, W, C]` videos (float32, about [-1, 1]); arguments as
    `VideoSampler.sample`. Video i depends only on (seed, i)."""
    condition = self.base.check_request(num_videos, batch_size, video_shape, condition)
    num_frames, frame_shape = int(video_shape[0]), tuple(int(s) for s in video_shape[1:])
    if num_frames < self.window:
      raise ConfigError(
        f"A window of {self.window} frames is longer than the video of "
        f"{num_frames} frames; sample it directly (method 'one_pass')."
      )
    if num_frames % self.temporal_patch:
      raise ConfigError(
        f"num_frames={num_frames} must be a multiple of the model's temporal "
        f"patch {self.temporal_patch}."
      )
    if self.per_window_condition and self.method == "freenoise":
      if condition.ndim < 2 or not 1 <= condition.shape[1] <= num_frames:
        raise ShapeError(
          f"FreeNoise spreads prompts over the video: give condition [N, P, ...] "
          f"with 1 <= P <= {num_frames}; got {condition.shape}."
        )
    elif self.per_window_condition:
      windows = self.num_windows(num_frames)
      if condition.ndim < 2 or condition.shape[1] != windows:
        raise ShapeError(
          f"Got {condition.shape[1] if condition.ndim >= 2 else 'no'} prompts per video for "
          f"the {windows} windows of {self.window} frames (stride {self.stride_frames}) of a "
          f"{num_frames}-frame video: give one per window, condition [N, {windows}, ...]."
        )
    if self.method == "fifo":
      self.fifo.check_length(num_frames)
    video_shape = (num_frames,) + frame_shape
    sample_batch = lambda keys, cond: self.jitted_sample_batch(params, keys, cond, video_shape)
    return sample_in_batches(sample_batch, seed, num_videos, batch_size, condition, progress)
