"""The sampling driver: one `lax.scan` over the timestep grid.

A solver is a pure step `(x, history, t_cur, t_next, noise) -> (x, history)`; `history` is
whatever a multistep solver carries between steps (earlier x0 estimates and their log-SNRs).
Compile time therefore does not grow with the number of steps. The driver owns the randomness:
it draws a fresh normal per step for stochastic solvers, or feeds given noise (to reproduce
another implementation's run number for number).
"""

from typing import Any, Callable, NamedTuple, Optional

import flax.struct
import jax
import jax.numpy as jnp

from jvdm.diffusion.weighting import staggered_levels
from jvdm.errors import ConfigError, ShapeError


@flax.struct.dataclass
class SamplerCarry:
  x: jnp.ndarray  # [B, T, H, W, C], the current noisy video
  rng: jax.Array  # [B] keys, one per video, so a video does not depend on its batch-mates
  history: Any = ()  # the solver's own state between steps


class Solver(NamedTuple):
  """A solver: its step, the history it starts from, and whether a step needs noise."""

  step: Callable[..., tuple[jnp.ndarray, Any]]  # (x, history, t_cur, t_next, noise)
  init_history: Callable[[jnp.ndarray, jnp.ndarray], Any] = lambda x, t: ()
  stochastic: bool = False


def split_per_sample(keys: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Splits each of the `[B]` keys in two: (keys to carry on, keys to use now)."""
  pairs = jax.vmap(jax.random.split)(keys)
  return pairs[:, 0], pairs[:, 1]


def normal_per_sample(keys: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jnp.ndarray:
  """Standard normal `[B, *shape]`, row i drawn from keys[i]."""
  return jax.vmap(lambda key: jax.random.normal(key, shape, dtype))(keys)


def uniform_time_grid(num_steps: int, t_start: float = 1.0, t_end: float = 0.0) -> jnp.ndarray:
  """`num_steps + 1` times evenly spaced from `t_start` (noise) down to `t_end` (clean)."""
  check_num_steps(num_steps)
  return jnp.linspace(t_start, t_end, num_steps + 1)


def check_num_steps(num_steps) -> None:
  if not isinstance(num_steps, int) or isinstance(num_steps, bool) or num_steps < 1:
    raise ConfigError(
      f"The number of sampling steps must be a positive integer, got {num_steps!r}."
    )


def staggered_time_grid(
  num_steps: int, num_frames: int, stagger: float, time_power: float = 1.0
) -> jnp.ndarray:
  """`[num_steps + 1, num_frames]` per-frame times in which later frames lag behind earlier ones.

  The pyramid scheduling of Diffusion Forcing (Chen et al. 2024, sec. 3.4) with a continuous
  lag: over the sampling progress u in [0, 1], frame k descends linearly from t = 1 to 0 during
  [k * stagger / (T - 1), k * stagger / (T - 1) + 1 - stagger]. Each frame is then denoised
  next to cleaner earlier frames, which a model trained with per-frame noise levels (FVDM)
  uses to keep objects and motion consistent. A frame waiting at t = 1 or done at t = 0 takes
  steps from t to the same t, which the driver turns into no-ops. stagger = 0 is the uniform
  grid for every frame.

  `time_power` rho warps each frame's descent to t = l^rho for its linear level l in [0, 1].
  rho > 1 crowds the steps near t = 0 (a frame given n steps starts its last one at n^-rho
  instead of 1 / n), as Karras et al. 2022 (eq. 5) do in sigma with rho = 7. On a schedule
  shifted to high noise, a grid linear in t starts the last step high (t = 0.1 is sigma 0.58 on
  the default shifted cosine), and an x0-predicting model's last estimate, the sample, is then
  the blurred mean of what that noise leaves open. The default 1 keeps it linear in t.
  """
  check_num_steps(num_steps)
  if not 0.0 <= stagger < 1.0:
    raise ConfigError(f"The frame stagger must be in [0, 1), got {stagger}.")
  check_time_power(time_power)
  progress = jnp.linspace(0.0, 1.0, num_steps + 1)[:, None]  # [S + 1, 1]
  return staggered_levels(progress, stagger, num_frames) ** time_power


def check_time_power(time_power: float) -> None:
  """The exponent of `staggered_time_grid` and of the uniform `sampling_time_grid`."""
  if not 1.0 <= time_power <= 10.0:
    raise ConfigError(f"The time power must be in [1, 10] (1 = uniform in t), got {time_power}.")


def _hold(moved: jnp.ndarray, new, old):
  """`new` where the time moved, else `old`, for every leaf whose leading axes are t's."""

  def select(new_leaf, old_leaf):
    mask = moved.reshape(moved.shape + (1,) * (new_leaf.ndim - moved.ndim))
    return jnp.where(mask, new_leaf, old_leaf)

  return jax.tree.map(select, new, old)


def run_solver(
  solver: Solver,
  x_init: jnp.ndarray,
  time_grid: jnp.ndarray | tuple[jnp.ndarray, jnp.ndarray],
  rng: jax.Array,
  noise: Optional[jnp.ndarray] = None,
  trajectory: bool = False,
  on_step: Optional[Callable[[jnp.ndarray], None]] = None,
) -> jnp.ndarray:
  """Runs `solver` from `x_init` over consecutive pairs of `time_grid`.

  Args:
    solver: the `Solver`.
    x_init: the starting noise `[B, T, H, W, C]`.
    time_grid: `[S + 1, ...]`; each entry is a scalar, `[B]` or `[B, T]` time. Or a pair
      (t_cur `[S, ...]`, t_next `[S, ...]`) for grids whose steps do not chain (diffusers'
      DDIM with "linspace" spacing, see `jvdm.diffusion.discrete.ddim_time_pairs`).
      An entry whose t_next equals t_cur leaves that video or frame, and its history, as is.
    rng: `[B]` keys, split once per step for the noise of stochastic solvers.
    noise: optional `[S, B, T, H, W, C]` noise for each step, used instead of drawing it.
    trajectory: return every intermediate sample too.
    on_step: called on the host with the number of steps done after each step
      (`jax.debug.callback`; e.g. a progress bar). On a mesh it may be called once per
      device, so it should set a count rather than add to one.

  Returns:
    The final `x`, or with `trajectory` `[S + 1, *x.shape]`: x_init then x after each step.
  """
  if isinstance(time_grid, (tuple, list)):
    t_cur, t_next = (jnp.asarray(t) for t in time_grid)
  else:
    time_grid = jnp.asarray(time_grid)
    t_cur, t_next = time_grid[:-1], time_grid[1:]
  num_steps, batch = t_cur.shape[0], x_init.shape[0]
  if t_cur.shape != t_next.shape or t_cur.ndim > 3:
    raise ShapeError(
      f"Time grids must be [S] or [S, B] or [S, B, T]; got t_cur {t_cur.shape}, "
      f"t_next {t_next.shape}."
    )
  if noise is not None and noise.shape != (num_steps,) + x_init.shape:
    raise ShapeError(
      f"noise must be [S, *x.shape] = {(num_steps,) + x_init.shape}, got {noise.shape}."
    )
  per_sample = lambda t: jnp.broadcast_to(t, (batch,)) if t.ndim == 0 else t

  def body(carry, inputs):
    step, t_now, t_to, step_noise = inputs
    t_now, t_to = per_sample(t_now), per_sample(t_to)
    rng = carry.rng
    if step_noise is None and solver.stochastic:
      rng, noise_rng = split_per_sample(rng)
      step_noise = normal_per_sample(noise_rng, carry.x.shape[1:], carry.x.dtype)
    x, history = solver.step(carry.x, carry.history, t_now, t_to, step_noise)
    x, history = _hold(t_now != t_to, (x, history), (carry.x, carry.history))
    if on_step is not None:
      jax.debug.callback(on_step, step + 1)
    return SamplerCarry(x=x, rng=rng, history=history), x if trajectory else None

  history = solver.init_history(x_init, per_sample(t_cur[0]))
  carry = SamplerCarry(x=x_init, rng=rng, history=history)
  carry, xs = jax.lax.scan(body, carry, (jnp.arange(num_steps), t_cur, t_next, noise))
  return jnp.concatenate([x_init[None], xs]) if trajectory else carry.x
