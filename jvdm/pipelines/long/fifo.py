"""FIFO-Diffusion (Kim et al. 2024): diagonal denoising of a queue of frames, and
Ouroboros-Diffusion's coherent tail latents (Chen et al. 2025).

A model trained on `window` frames with per-frame times denoises a queue of frames whose noise
levels rise from head to tail. Every iteration steps each frame down one level, so the
`frames_per_level` frames at the head become clean; they leave the queue, the rest shifts
forward, and new frames at the top level (pure noise) enter at the tail. Memory is that of the
queue, whatever the video's length.

The authors' code (jjihwan/FIFO-Diffusion_public, `scripts/evaluation/funcs.py`, VideoCrafter2)
and jvdm, step by step:
- Levels: the authors' queue position p sits at `ddim_timesteps[p]`, the S = n * f timesteps
  of their base DDIM sampler (`videocrafter_main.py:138`; LDM's "uniform" discretization,
  `np.linspace(0, 999, S).round()`, `lvdm/models/utils_diffusion.py:60`), and steps to the next
  lower one (`ddim_alphas_prev`). jvdm's levels are likewise the S-step grid of the base
  sampler (`LongVideoSampler.fifo_levels`; `queue_levels` from `spacing` when FIFO runs alone):
  queue position p sits at level `p // frames_per_level + 1` of S + 1 ascending levels, level 0
  being t = 0. "uniform" is uniform in t, which is uniform in the
  training index (t = (k + 1) / N); "linspace" on a discrete (DDPM) schedule is the authors'
  timesteps exactly. How noisy a level is follows the model's own noise schedule. One
  difference remains: the authors' lowest timestep is index 0, whose step (to
  alphas_cumprod[0], the same level) changes nothing; jvdm's grids end at t = 0, so a frame's
  last step lands on clean data.
- Head: the lookahead head holds frames already output (the first window's context only, never
  updated). The authors label it with their first timestep (index 0, effectively clean: the
  level the frames were output at); jvdm labels it level 0, t = 0, where its frames are.
- Latent partitioning (sec. 4.1): the queue is `num_partitions` windows of `window` frames
  (S = num_partitions * window / frames_per_level steps), all denoised in one batched call.
- Lookahead denoising (sec. 4.2): `window // 2` already-output frames stay at the head of the
  queue, windows start every `window // 2` frames, and only the second half of each window is
  updated, so every frame is denoised next to cleaner frames before it.
- frames_per_level = 1 is the paper's diagonal denoising; frames_per_level = window gives each
  window a single level, which is ordinary sampling of that window (a test checks it).
- Solver: DDIM with eta = 1 (the authors' `--eta` default, `videocrafter_main.py:131`; their
  Open-Sora port defaults to the DDPM scheduler); `eta` = 0 is deterministic DDIM.
- Start (the authors' `prepare_latents`, funcs.py:14; no inversion): a base clip of `window`
  frames sampled by the base sampler with the same S steps and eta; queue position p holds base
  frame max(0, p - (Q - window)) noised to its level, the head base frame 0 at its level; the
  first (Q - window) / frames_per_level outputs are discarded, so the video starts at the base
  clip's first frame. With more than one partition the positions before the kept frames are
  all noised copies of base frame 0, a still context for the first kept frames: that is the
  authors' start too.
- Partitions and drift (measured here, not in the paper): with n > 1 partitions the window that
  takes a frame through its noisiest levels, where layout and colour are decided, holds only
  frames at intermediate levels as context; no clean frame is within reach, so what a frame
  copies from its predecessors passes through a chain of noisy frames. On this project's
  default UNet (benchmarks/long_video.py, 128 frames, 4 videos) colours drift a palette
  channel at a time (white -> yellow -> red) and shapes vanish for good with 2 partitions
  (bright pixels kept 0.63 of the first window's, colours kept in 7% of windows); with 1
  partition the context of the deciding window is at most (window / 2) levels from clean and
  neither happens (bright pixels 1.15, colours kept 46%). The default stays the authors' 4.
- tail "gaussian": fresh noise (the authors' `shift_latents`); "ouroboros" (Ouroboros-Diffusion,
  coherent tail latent sampling): the spatial low frequencies of the frame before the tail, at
  its level, with the high frequencies of fresh noise, so new frames start close to their
  neighbour in layout.
"""

import dataclasses
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jvdm.errors import ConfigError, ShapeError
from jvdm.ops.freelong import low_pass_filter
from jvdm.samplers.denoiser import Denoiser, alpha_sigma_like
from jvdm.samplers.driver import normal_per_sample, split_per_sample
from jvdm.samplers.grids import sampling_time_grid
from jvdm.ops.windows import extract_windows, window_starts
from jvdm.samplers.solvers import SOLVERS

TAILS = ("gaussian", "ouroboros")
# Solvers that carry no history between steps: each frame may be at its own point of the grid.
SINGLE_STEP_SAMPLERS = ("ddim", "ddpm", "euler", "euler_ancestral", "heun", "flow_euler")


def grid_levels(grid) -> np.ndarray:
  """float64 `[S + 1]` ascending queue levels, level 0 = t 0 (clean), from a sampler's S-step
  grid (`VideoSampler.time_grid`: `[S + 1]` times, or diffusers' DDIM (t_cur, t_next) pairs).
  diffusers' DDIM steps do not land on the next listed index (999 -> 899, then 888 -> 788), so
  for those the listed times are the levels, each stepping to the next listed one."""
  if isinstance(grid, tuple):  # (t_cur, t_next) pairs: keep the listed times, end at t = 0
    grid = np.concatenate([np.asarray(grid[0], np.float64), [0.0]])
  return np.asarray(grid, np.float64)[::-1]


def queue_levels(
  process, sampler: str, num_levels: int, spacing: str = "uniform", steps_offset: int = 0
) -> np.ndarray:
  """`grid_levels` of the S-step grid of `sampler`'s family with `spacing`
  (`jvdm.samplers.grids`), as the authors take their base sampler's timesteps."""
  return grid_levels(
    sampling_time_grid(process, SOLVERS[sampler][1], num_levels, spacing, steps_offset)
  )


def tail_noise(keys: jax.Array, iteration, shape) -> jnp.ndarray:
  """The fresh noise `[B, *shape]` that enters the queue's tail after `iteration`."""
  folded = jax.vmap(jax.random.fold_in, (0, None))(keys, iteration)
  return normal_per_sample(folded, tuple(shape))


def coherent_tail(previous: jnp.ndarray, noise: jnp.ndarray, cutoff: float) -> jnp.ndarray:
  """Ouroboros-Diffusion's tail latent: the low spatial frequencies (`cutoff` of Nyquist) of
  `previous` `[B, k, H, W, C]` with the high frequencies of `noise` (same shape)."""
  low_pass = low_pass_filter((1,) + previous.shape[2:4], 1.0, cutoff, "box")[None, :, :, :, None]
  spectrum = lambda a: jnp.fft.fft2(a, axes=(2, 3))
  mixed = spectrum(previous) * low_pass + spectrum(noise) * (1.0 - low_pass)
  return jnp.fft.ifft2(mixed, axes=(2, 3)).real.astype(noise.dtype)


@dataclasses.dataclass(frozen=True)
class FIFODiffusion:
  """FIFO-Diffusion's settings (module docstring).

  Attributes:
    window: frames per model call (the model's training length, in latent frames).
    num_partitions: windows in the queue; the queue holds num_partitions * window frames.
    frames_per_level: frames that share a noise level (and leave the queue per iteration);
      must divide `window`. 1 = the paper.
    lookahead: lookahead denoising (needs an even window).
    tail: "gaussian" or "ouroboros".
    tail_cutoff: ouroboros: the spatial low-pass cutoff, a fraction of Nyquist in [0, 1].
    sampler, eta, clip_x0: a single-step solver (`SINGLE_STEP_SAMPLERS`) and its settings;
      eta None = the authors' 1 with "ddim" (0 with the others, which have no eta); 0 =
      deterministic DDIM.
    spacing, steps_offset: the level grid (`queue_levels`); the base sampler's.
  """

  window: int
  num_partitions: int = 4
  frames_per_level: int = 1
  lookahead: bool = True
  tail: str = "gaussian"
  tail_cutoff: float = 0.25
  sampler: str = "ddim"
  eta: float | None = None
  clip_x0: bool = True
  spacing: str = "uniform"
  steps_offset: int = 0

  def __post_init__(self):
    if self.eta is None:  # the authors' eta (`videocrafter_main.py:131`)
      object.__setattr__(self, "eta", 1.0 if self.sampler == "ddim" else 0.0)
    if self.window < 1 or self.num_partitions < 1:
      raise ConfigError(
        f"FIFO needs window >= 1 and num_partitions >= 1, got window="
        f"{self.window}, num_partitions={self.num_partitions}."
      )
    if self.frames_per_level < 1 or self.window % self.frames_per_level:
      raise ConfigError(
        f"frames_per_level={self.frames_per_level} must divide the window of {self.window} frames."
      )
    if self.lookahead and (self.window < 2 or self.window % 2):
      raise ConfigError(
        f"Lookahead denoising updates the second half of each window; it needs "
        f"an even window, got {self.window}."
      )
    if self.tail not in TAILS:
      raise ConfigError(f"Unknown FIFO tail {self.tail!r}; expected one of {TAILS}.")
    if not 0.0 <= self.tail_cutoff <= 1.0:
      raise ConfigError(f"tail_cutoff must be in [0, 1], got {self.tail_cutoff}.")
    if self.sampler not in SINGLE_STEP_SAMPLERS:
      raise ConfigError(
        f"FIFO moves each frame along its own point of the grid, which needs a "
        f"single-step solver, one of {SINGLE_STEP_SAMPLERS}; got "
        f"{self.sampler!r}."
      )
    if self.eta < 0 or (self.eta and self.sampler != "ddim"):
      raise ConfigError(
        f"eta must be >= 0 and applies to the 'ddim' sampler only; got eta="
        f"{self.eta} with {self.sampler!r} (use eta=0 with it)."
      )

  @property
  def queue_length(self) -> int:
    """Frames in the queue, without the lookahead head."""
    return self.num_partitions * self.window

  @property
  def num_levels(self) -> int:
    """S: the solver steps a frame takes from the tail to the head."""
    return self.queue_length // self.frames_per_level

  @property
  def head(self) -> int:
    """Output frames kept at the head of the queue for lookahead denoising."""
    return self.window // 2 if self.lookahead else 0

  def levels(self, process) -> np.ndarray:
    """float64 `[S + 1]` ascending levels (`queue_levels`); a frame at queue position p (after
    the head) sits at level p // frames_per_level + 1."""
    return queue_levels(process, self.sampler, self.num_levels, self.spacing, self.steps_offset)

  def check_length(self, num_frames: int) -> None:
    if num_frames < self.queue_length:
      raise ConfigError(
        f"FIFO with a queue of {self.queue_length} frames (num_partitions="
        f"{self.num_partitions} x window={self.window}) needs a video of at least that many "
        f"frames; got num_frames={num_frames}. Use fewer partitions or sample directly."
      )
    if num_frames % self.frames_per_level:
      raise ConfigError(
        f"num_frames={num_frames} must be a multiple of frames_per_level={self.frames_per_level}."
      )

  def sample(
    self,
    denoise: Denoiser,
    process,
    keys: jax.Array,
    base: jnp.ndarray,
    num_frames: int,
    cond: Optional[Any] = None,
    levels: Optional[np.ndarray] = None,
  ) -> jnp.ndarray:
    """Generates `[B, num_frames, H, W, C]` from a base clip `[B, window, H, W, C]` (clean).

    Traceable (call it under `jax.jit`, with the params as arguments); one `lax.scan` over
    the iterations. `keys` `[B]`: video i depends only on keys[i] and base[i]. `levels`: the
    `[S + 1]` ascending levels (`grid_levels` of a sampler's grid); None = `self.levels`.
    """
    self.check_length(num_frames)
    if base.ndim != 5 or base.shape[1] != self.window:
      raise ShapeError(
        f"The base clip must be [B, window={self.window}, H, W, C], got {base.shape}."
      )
    batch, frame_shape = base.shape[0], base.shape[2:]
    k, head, queue_length = self.frames_per_level, self.head, self.queue_length
    levels = self.levels(process) if levels is None else np.asarray(levels, np.float64)
    if levels.shape != (self.num_levels + 1,) or levels[0] != 0.0:
      raise ShapeError(
        f"FIFO's {self.num_levels} steps need {self.num_levels + 1} ascending "
        f"levels from t = 0; got {levels.shape} from {levels[0]}."
      )
    levels = jnp.asarray(levels, jnp.float32)
    # Level index of every queue position. The head holds output frames, clean: level 0, as
    # the authors' head sits at their first (effectively clean) timestep. It is only context:
    # its step is computed with the window's and dropped.
    level_index = jnp.concatenate([jnp.zeros(head, jnp.int32), jnp.arange(queue_length) // k + 1])
    t_cur = levels[level_index]
    t_next = levels[jnp.maximum(level_index - 1, 0)]
    stride = self.window // 2 if self.lookahead else self.window
    starts = window_starts(head + queue_length, self.window, stride)
    first_updated = self.window - stride  # frames of a window that only provide context

    conditional = lambda z, t, _: denoise(z, t, self._window_cond(cond, len(starts)))
    solver = SOLVERS[self.sampler][0](conditional, process, self.eta, self.clip_x0)

    def step_queue(queue, noise_keys):
      windows = extract_windows(queue, starts, self.window)  # [B, W, window, ...]
      fold = lambda a: a.reshape((-1,) + a.shape[2:])
      t_windows = lambda t: jnp.broadcast_to(
        extract_windows(t[None], starts, self.window), (batch, len(starts), self.window)
      )
      noise = None
      if solver.stochastic:
        noise = normal_per_sample(noise_keys, (len(starts), self.window) + frame_shape)
      stepped, _ = solver.step(
        fold(windows),
        (),
        fold(t_windows(t_cur)),
        fold(t_windows(t_next)),
        None if noise is None else fold(noise),
      )
      stepped = stepped.reshape(windows.shape)[:, :, first_updated:]
      return jnp.concatenate([queue[:, :head], stepped.reshape((batch, -1) + frame_shape)], 1)

    def iteration(carry, index):
      queue, rng = carry
      rng, step_keys = split_per_sample(rng)
      queue = step_queue(queue, step_keys)
      out = queue[:, head : head + k]  # at level 0: clean
      fresh = tail_noise(keys, index, (k,) + tuple(frame_shape))
      if self.tail == "ouroboros":
        fresh = coherent_tail(queue[:, -k:], fresh, self.tail_cutoff)
      return (jnp.concatenate([queue[:, k:], fresh], axis=1), rng), out

    rng, init_keys = split_per_sample(keys)  # independent of the fold_in tail keys
    queue = self._initial_queue(process, base, levels, level_index, init_keys)
    warmup = (queue_length - self.window) // k
    iterations = warmup + num_frames // k
    _, outs = jax.lax.scan(iteration, (queue, rng), jnp.arange(iterations))
    video = jnp.moveaxis(outs[warmup:], 0, 1)  # [B, iterations, k, ...]
    return video.reshape((batch, num_frames) + tuple(frame_shape))

  def _initial_queue(self, process, base, levels, level_index, keys):
    """The authors' start: position p holds base frame max(0, p - (Q - window)) at its level;
    the lookahead head holds base frame 0 at level 0 (clean)."""
    positions = jnp.arange(self.queue_length)
    source = jnp.maximum(0, positions - (self.queue_length - self.window))
    source = jnp.concatenate([jnp.zeros(self.head, jnp.int32), source])
    clean = base[:, source]
    t = jnp.broadcast_to(levels[level_index], clean.shape[:2])
    alpha, sigma = alpha_sigma_like(process, t, clean)
    return alpha * clean + sigma * normal_per_sample(keys, clean.shape[1:])

  @staticmethod
  def _window_cond(cond, count):
    """The video's condition for each of the `count` windows folded into the batch."""
    if cond is None:
      return None
    return jax.tree.map(lambda leaf: jnp.repeat(jnp.asarray(leaf), count, axis=0), cond)
