"""Generating videos from a network: noise -> jitted scan of solver steps -> videos in [-1, 1]."""

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from jvdm.diffusion import FlowProcess, Process
from jvdm.errors import ConfigError, ShapeError
from jvdm.pipelines.step_progress import StepProgress
from jvdm.samplers.denoiser import make_denoiser
from jvdm.samplers.driver import (
  normal_per_sample,
  run_solver,
  split_per_sample,
  staggered_time_grid,
)
from jvdm.samplers.grids import sampling_time_grid
from jvdm.samplers.guidance import classifier_free_guidance
from jvdm.samplers.solvers import SAMPLERS, SOLVERS


@dataclasses.dataclass(frozen=True)
class VideoSampler:
  """Samples videos from `apply_fn` with one compile per (batch shape, step count).

  Video i of a call with seed s depends only on (s, i), not on the batch size. With
  `frame_stagger` > 0 every frame gets its own time grid (see `staggered_time_grid`); that
  suits models trained with per-frame noise levels. `spacing` picks the time grid
  (`jvdm.samplers.grids`): "uniform" in t, or a diffusers spacing with that library's numbers.
  A conditional model (`null_condition` set) samples given conditions, with classifier-free
  guidance of `guidance_scale` against the null condition in the same batched call.
  """

  apply_fn: Callable[..., jnp.ndarray]
  process: Process
  prediction: str
  sampler: str = "ddim"
  num_steps: int = 50
  eta: float = 0.0
  clip_x0: bool = True
  frame_stagger: float = 0.0
  spacing: str = "uniform"
  # rho of the "uniform" grid, t = level^rho per frame: > 1 crowds steps near clean data.
  time_power: float = 1.0
  steps_offset: int = 0
  set_alpha_to_one: bool = True  # DDIM's last step: to alpha_bar = 1, or alphas_cumprod[0]
  guidance_scale: float = 1.0
  # A conditional model's null condition (e.g. caption), broadcast to each batch's condition;
  # or a function of the batch's condition, for conditions with parts guidance keeps (an
  # image-to-video model's image: `cond -> (null caption, cond's image)`).
  null_condition: Any = None
  # Long-video hooks (`jvdm.pipelines.long`): the starting noise `(keys [B], video_shape) ->
  # [B, *video_shape]` (default iid normal per video), and a wrapper of the (guided,
  # still condition-taking) denoiser, e.g. co-denoising over windows.
  initial_noise: Callable[[jax.Array, tuple[int, ...]], jnp.ndarray] | None = None
  denoiser_transform: Callable[[Callable], Callable] | None = None

  def __post_init__(self):
    if self.sampler not in SAMPLERS:
      raise ConfigError(f"Unknown sampler {self.sampler!r}; valid samplers: {list(SAMPLERS)}.")
    staggered_time_grid(self.num_steps, 2, self.frame_stagger, self.time_power)  # validates
    self.time_grid  # pylint: disable=pointless-statement  # validates spacing and process
    if self.frame_stagger and self.spacing != "uniform":
      raise ConfigError(
        f"frame_stagger={self.frame_stagger} staggers the uniform grid; it does "
        f"not combine with spacing={self.spacing!r}."
      )
    if self.eta < 0:
      raise ConfigError(f"DDIM eta must be >= 0, got {self.eta}.")
    if self.eta and self.sampler != "ddim":
      raise ConfigError(f"eta={self.eta} applies to the 'ddim' sampler only, not {self.sampler!r}.")
    if self.sampler == "heun" and isinstance(self.process, FlowProcess):
      raise ConfigError(
        "The 'heun' sampler steps in sigma / alpha, which is infinite at the flow "
        "process's t = 1; use 'flow_euler', 'dpmpp_2m' or 'unipc'."
      )
    if self.guidance_scale != 1.0 and self.null_condition is None:
      raise ConfigError(
        f"guidance_scale={self.guidance_scale} needs a conditional model and its null "
        "condition (e.g. a DiT with model.condition='caption'); this model is unconditional. "
        "Use guidance_scale=1."
      )

  @functools.cached_property
  def time_grid(self):
    """float64 numpy `[S + 1]` times or (t_cur, t_next) pairs, computed once outside jit."""
    return sampling_time_grid(
      self.process,
      SOLVERS[self.sampler][1],
      self.num_steps,
      self.spacing,
      self.steps_offset,
      time_power=self.time_power,
      set_alpha_to_one=self.set_alpha_to_one,
    )

  def denoiser(self, params: Any, conditional: bool):
    """The x0 denoiser `(z, t, cond)` of the network at `params`, with classifier-free
    guidance against the null condition when `conditional` and guidance_scale != 1. The null
    condition takes the shape of each call's cond (a long-video method may fold windows into
    the batch)."""
    denoise = make_denoiser(self.apply_fn, params, self.process, self.prediction)
    if not conditional or self.guidance_scale == 1.0:
      return denoise

    def guided(z, t, cond):
      if callable(self.null_condition):
        null = self.null_condition(cond)
      else:
        null = jnp.broadcast_to(jnp.asarray(self.null_condition, cond.dtype), cond.shape)
      return classifier_free_guidance(denoise, null, self.guidance_scale)(z, t, cond)

    return guided

  def sample_batch(
    self, params: Any, keys: jax.Array, condition: jax.Array | None, video_shape: tuple[int, ...]
  ) -> jnp.ndarray:
    """Traceable: `[B, *video_shape]` videos from `[B]` keys (and a `[B, ...]` condition);
    `sample` runs it jitted, with the params as arguments."""
    denoise = self.denoiser(params, condition is not None)
    if self.denoiser_transform is not None:
      denoise = self.denoiser_transform(denoise)
    if condition is not None:
      conditional = denoise
      denoise = lambda z, t, _: conditional(z, t, condition)
    solver = SOLVERS[self.sampler][0](denoise, self.process, self.eta, self.clip_x0)
    solver_keys, init_keys = split_per_sample(keys)
    x_init = (
      normal_per_sample(init_keys, video_shape)
      if self.initial_noise is None
      else self.initial_noise(init_keys, video_shape)
    )
    grid = self.solver_grid(video_shape[0])
    if self.frame_stagger:  # one time per frame: [S + 1, T] -> [S + 1, B, T]
      grid = jnp.broadcast_to(grid[:, None], (grid.shape[0], keys.shape[0], video_shape[0]))
    return run_solver(solver, x_init, grid, solver_keys, on_step=self.step_progress)

  @functools.cached_property
  def step_progress(self) -> StepProgress:
    """The per-step progress bar `sample` shows (the jitted loop reports to it)."""
    return StepProgress()

  def solver_grid(self, num_frames: int):
    """The times the scan steps through for videos of `num_frames` frames: `time_grid`, or
    with `frame_stagger` one time per frame `[S' + 1, T]` (a staggered grid has more steps)."""
    if self.frame_stagger:
      return staggered_time_grid(self.num_steps, num_frames, self.frame_stagger, self.time_power)
    return self.time_grid

  def num_solver_steps(self, num_frames: int) -> int:
    """Steps of the scan for videos of `num_frames` frames."""
    grid = self.solver_grid(num_frames)
    return len(grid[0]) if isinstance(grid, tuple) else len(grid) - 1

  @functools.cached_property
  def jitted_sample_batch(self):
    """`sample_batch` under `jax.jit` (video_shape static): one compile per batch shape."""
    return jax.jit(self.sample_batch, static_argnums=3)

  def check_request(
    self,
    num_videos: int,
    batch_size: int,
    video_shape: tuple[int, ...],
    condition: np.ndarray | None,
  ) -> np.ndarray | None:
    """Validates the arguments of `sample`; returns the condition as numpy."""
    if num_videos < 1 or batch_size < 1:
      raise ConfigError(f"num_videos and batch_size must be >= 1, got {num_videos}, {batch_size}.")
    if (condition is None) != (self.null_condition is None):
      raise ConfigError(
        "This model is conditional: pass one condition per video (e.g. caption tokens)."
        if condition is None
        else "This model is unconditional; it takes no condition."
      )
    if condition is not None:  # an array, or a pytree of arrays (each one row per video)
      condition = jax.tree.map(np.asarray, condition)
      shapes = [leaf.shape for leaf in jax.tree.leaves(condition)]
      if any(shape[:1] != (num_videos,) for shape in shapes):
        raise ShapeError(
          f"Expected one condition per video, [{num_videos}, ...]; got "
          f"{shapes[0] if len(shapes) == 1 else shapes}."
        )
    if len(video_shape) != 4:
      raise ShapeError(f"video_shape must be (T, H, W, C), got {video_shape}.")
    return condition

  def sample(
    self,
    params: Any,
    seed: int,
    num_videos: int,
    video_shape: tuple[int, int, int, int],
    batch_size: int = 8,
    progress: bool = True,
    condition: Any = None,
  ) -> np.ndarray:
    """Returns `num_videos` videos `[N, T, H, W, C]` (float32 in about [-1, 1]) as numpy.

    Args:
      params: the network params (usually the EMA params).
      seed: the same seed gives the same videos.
      num_videos: how many videos.
      video_shape: `(T, H, W, C)`.
      batch_size: videos per jitted call (one compile; the last batch is padded).
      progress: show a progress bar over the solver steps of all batches.
      condition: `[num_videos, ...]`, one condition per video (e.g. caption tokens), or a
        pytree of such arrays (e.g. an image-to-video model's text, image and channels);
        required by a conditional model, refused by an unconditional one.
    """
    condition = self.check_request(num_videos, batch_size, video_shape, condition)
    steps = self.num_solver_steps(video_shape[0])

    def sample_batch(keys, cond):
      videos = self.jitted_sample_batch(params, keys, cond, tuple(video_shape))
      jax.block_until_ready(videos)
      self.step_progress.batch_finished(steps)
      return videos

    num_batches = -(-num_videos // min(batch_size, num_videos))
    with self.step_progress.showing(num_batches * steps, enabled=progress):
      return sample_in_batches(sample_batch, seed, num_videos, batch_size, condition, False)


def video_keys(seed: int, num_videos: int) -> jax.Array:
  """`[num_videos]` keys: video i's is fold_in(key(seed), i), whatever the batching."""
  return jax.vmap(lambda i: jax.random.fold_in(jax.random.key(seed), i))(jnp.arange(num_videos))


def sample_in_batches(
  sample_batch: Callable[[jax.Array, Any], jnp.ndarray],
  seed: int,
  num_videos: int,
  batch_size: int,
  condition: np.ndarray | None = None,
  progress: bool = True,
) -> np.ndarray:
  """Runs `sample_batch(keys [b], condition [b, ...] | None) -> videos [b, ...]` over batches
  of `batch_size` videos (the last padded, so one compiled shape) with a progress bar; video i
  gets the key fold_in(key(seed), i), so it does not depend on the batch size. Returns numpy
  `[num_videos, ...]`."""
  all_keys = video_keys(seed, num_videos)
  batch_size = min(batch_size, num_videos)
  outputs = []
  starts = range(0, num_videos, batch_size)
  for start in tqdm.tqdm(starts, desc="sampling", unit="batch", disable=not progress):
    keys = all_keys[start : start + batch_size]
    batch_condition = jax.tree.map(lambda a: a[start : start + batch_size], condition)
    count = keys.shape[0]
    if count < batch_size:  # pad to keep a single compiled shape
      pad = lambda a: jnp.concatenate([a, jnp.repeat(a[:1], batch_size - count, axis=0)])
      keys = pad(keys)
      batch_condition = jax.tree.map(pad, batch_condition)
    outputs.append(np.asarray(sample_batch(keys, batch_condition)[:count]))
  return np.concatenate(outputs)
