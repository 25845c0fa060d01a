"""Autoregressive extension of a non-causal short-clip model (SEINE, Chen et al. 2023, sec. 3;
VidRD, Gu et al. 2023, sec. 3.2).

The video is generated clip by clip: the first clip is `window` frames sampled as usual; every
next clip is a window whose first `context_frames` frames are given (the last frames generated
so far) and whose other frames are new. Two ways to give the context:

- "clean": the context frames sit at t = 0 during the whole clip (their per-frame time grid
  steps from 0 to 0, which `run_solver` turns into no-ops, and the denoiser always sees the
  exact context). The model conditions on them through its per-frame noise levels, as a model
  trained with independent per-frame times does (FVDM, Liu et al. 2024; this project's default
  UNet config).
- "replace": training-free for any model (RePaint, Lugmayr et al. 2022, sec. 4.1, eq. 8): all
  frames follow the grid, and after every step the context frames are replaced by the context
  noised forward to that step's t_next with fresh noise. The last step ends at t = 0, so the
  context comes out as given (exactly where sigma(0) = 0, e.g. the flow and EDM processes; up to
  sigma(0) ~ 5e-4 of noise for VP's cosine schedule, as for any sample there).

The clips run in one `lax.scan` (the clip body is traced once for any length); the carry is the
last `context_frames` frames, so memory is flat in the video length apart from the output.
"""

from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp

from jvdm.errors import ConfigError, ShapeError
from jvdm.samplers.denoiser import Denoiser, alpha_sigma_like
from jvdm.samplers.driver import (
  Solver,
  normal_per_sample,
  run_solver,
  split_per_sample,
  staggered_time_grid,
)
from jvdm.samplers.grids import sampling_time_grid
from jvdm.samplers.solvers import SOLVERS

MODES = ("clean", "replace")


def _replacing(solver: Solver, process, context: jnp.ndarray, known: jnp.ndarray) -> Solver:
  """`solver`, with the `known` frames replaced after every step by `context` noised to t_next
  (RePaint, eq. 8). The fresh noise is the driver's noise at those frames: a stochastic base
  solver uses it there only for the frames' own update, which the replacement overwrites."""

  def step(x, history, t_cur, t_next, noise):
    x, history = solver.step(x, history, t_cur, t_next, noise)
    alpha, sigma = alpha_sigma_like(process, t_next, x)
    return jnp.where(known, alpha * context + sigma * noise, x), history

  return Solver(step=step, init_history=solver.init_history, stochastic=True)


def frame_time_grid(
  process,
  sampler: str,
  num_steps: int,
  num_frames: int,
  frame_stagger: float = 0.0,
  time_power: float = 1.0,
) -> jnp.ndarray:
  """`[S + 1, num_frames]` per-frame times, as `VideoSampler` samples `num_frames` frames on
  the uniform grid (staggered when frame_stagger > 0)."""
  if frame_stagger:
    return staggered_time_grid(num_steps, num_frames, frame_stagger, time_power)
  uniform = jnp.asarray(
    sampling_time_grid(process, SOLVERS[sampler][1], num_steps, time_power=time_power), jnp.float32
  )
  return jnp.broadcast_to(uniform[:, None], (num_steps + 1, num_frames))


def _extend(
  keys,
  cond,
  *,
  denoise,
  process,
  num_frames,
  window,
  context_frames,
  frame_shape,
  sampler,
  num_steps,
  eta,
  clip_x0,
  mode,
  frame_stagger,
  time_power,
  return_clips,
):
  batch, k = keys.shape[0], context_frames
  num_clips = 1 + -(-(num_frames - window) // (window - k))
  frame_grid = lambda frames: frame_time_grid(
    process, sampler, num_steps, frames, frame_stagger, time_power
  )

  first_grid = frame_grid(window)
  later_grid = (
    first_grid
    if mode == "replace"
    else jnp.concatenate([jnp.zeros((num_steps + 1, k)), frame_grid(window - k)], axis=1)
  )
  is_context = (jnp.arange(window) < k)[None, :, None, None, None]

  def clip_body(carry, inputs):
    context, head = carry  # the last k frames so far; the first clip's first k frames
    index, clip_keys = inputs
    extending = index > 0
    known = is_context & extending
    grid = jnp.where(extending, later_grid, first_grid)
    grid = jnp.broadcast_to(grid[:, None], (num_steps + 1, batch, window))
    given = jnp.concatenate([context, jnp.zeros((batch, window - k) + frame_shape)], axis=1)
    solver_keys, init_keys = split_per_sample(clip_keys)  # as VideoSampler, for clip 0
    noise = normal_per_sample(init_keys, (window,) + frame_shape)
    if mode == "clean":
      conditional = lambda z, t, _: denoise(jnp.where(known, given, z), t, cond)
      solver = SOLVERS[sampler][0](conditional, process, eta, clip_x0)
      x_init = jnp.where(known, given, noise)
    else:
      conditional = lambda z, t, _: denoise(z, t, cond)
      solver = _replacing(
        SOLVERS[sampler][0](conditional, process, eta, clip_x0), process, given, known
      )
      alpha, sigma = alpha_sigma_like(process, grid[0], noise)
      x_init = jnp.where(known, alpha * given + sigma * noise, noise)
    clip = run_solver(solver, x_init, grid, solver_keys)
    head = jnp.where(extending, head, clip[:, :k])
    return (clip[:, window - k :], head), clip if return_clips else clip[:, k:]

  fold = lambda c: jax.vmap(jax.random.fold_in, (0, None))(keys, c)
  clip_keys = jnp.concatenate([keys[None], jax.vmap(fold)(jnp.arange(1, num_clips))])
  start = jnp.zeros((batch, k) + frame_shape)
  (_, head), clips = jax.lax.scan(clip_body, (start, start), (jnp.arange(num_clips), clip_keys))
  clips = jnp.moveaxis(clips, 0, 1)  # [B, clips, frames per clip, ...]
  if return_clips:
    return clips
  new = clips.reshape((batch, -1) + frame_shape)
  return jnp.concatenate([head, new], axis=1)[:, :num_frames]


_STATIC = (
  "denoise",
  "process",
  "num_frames",
  "window",
  "context_frames",
  "frame_shape",
  "sampler",
  "num_steps",
  "eta",
  "clip_x0",
  "mode",
  "frame_stagger",
  "time_power",
  "return_clips",
)
_extend_jitted = jax.jit(_extend, static_argnames=_STATIC)


def extend(
  denoise: Denoiser,
  process,
  keys: jax.Array,
  num_frames: int,
  window: int,
  context_frames: int,
  frame_shape: Sequence[int],
  sampler: str = "ddim",
  num_steps: int = 50,
  eta: float = 0.0,
  clip_x0: bool = True,
  mode: str = "clean",
  frame_stagger: float = 0.0,
  time_power: float = 1.0,
  cond: Optional[Any] = None,
  return_clips: bool = False,
  jit: bool = True,
) -> jnp.ndarray:
  """Generates `num_frames` frames clip by clip with a model trained on `window` frames.

  Clip 0 is sampled as `VideoSampler` samples one window (same keys, same numbers). Clip c > 0
  draws from `fold_in(keys, c)` and holds `context_frames` given frames plus
  `window - context_frames` new ones. Every clip is a full solver run, so multistep solvers
  start afresh per clip. One jitted function per static configuration (the denoiser is part of
  it: build it once, not per call).

  Args:
    denoise: `(z [B, window, H, W, C], t [B, window], cond) -> x0`.
    process: the process the denoiser was trained on.
    keys: `[B]` keys, one per video.
    num_frames: frames to generate, >= window.
    window: frames per clip (the model's training length).
    context_frames: given frames per later clip, in [1, window - 1].
    frame_shape: (H, W, C).
    sampler, num_steps, eta, clip_x0, frame_stagger, time_power: as `VideoSampler` (uniform
      time grid, or the staggered one; in "clean" mode a later clip staggers its new frames
      only).
    mode: "clean" or "replace" (module docstring).
    cond: the denoiser's condition, batched like the videos (the same for every clip).
    return_clips: return the clips `[B, num_clips, window, H, W, C]`, each with its context
      frames, instead of the video.
    jit: jit here, with the denoiser static; False: trace into the caller's jit (which then
      passes the params as arguments instead of baking them in as constants).

  Returns:
    `[B, num_frames, H, W, C]`: the first clip, then each later clip's new frames (the last
    clip cut to fit).
  """
  if mode not in MODES:
    raise ConfigError(f"Unknown extension mode {mode!r}; expected one of {MODES}.")
  if sampler not in SOLVERS:
    raise ConfigError(f"Unknown sampler {sampler!r}; valid samplers: {list(SOLVERS)}.")
  if eta < 0 or (eta and sampler != "ddim"):
    raise ConfigError(
      f"eta must be >= 0 and applies to the 'ddim' sampler only; got eta={eta} with {sampler!r}."
    )
  staggered_time_grid(num_steps, 2, frame_stagger, time_power)  # validates all three
  if not 1 <= context_frames < window:
    raise ConfigError(
      f"context_frames must be in [1, window - 1] = [1, {window - 1}] so that "
      f"each clip adds new frames; got {context_frames}."
    )
  if window > num_frames:
    raise ConfigError(
      f"A clip of window={window} frames is longer than the requested "
      f"num_frames={num_frames}; sample {num_frames} frames directly."
    )
  frame_shape = tuple(int(size) for size in frame_shape)
  if len(frame_shape) != 3:
    raise ShapeError(f"frame_shape must be (H, W, C), got {frame_shape}.")
  if jax.dtypes.issubdtype(keys.dtype, jax.dtypes.prng_key) and keys.ndim != 1:
    raise ShapeError(f"keys must be [B], one key per video; got shape {keys.shape}.")
  run = _extend_jitted if jit else _extend
  return run(
    keys,
    cond,
    denoise=denoise,
    process=process,
    num_frames=num_frames,
    window=window,
    context_frames=context_frames,
    frame_shape=frame_shape,
    sampler=sampler,
    num_steps=num_steps,
    eta=float(eta),
    clip_x0=clip_x0,
    mode=mode,
    frame_stagger=float(frame_stagger),
    time_power=float(time_power),
    return_clips=return_clips,
  )
