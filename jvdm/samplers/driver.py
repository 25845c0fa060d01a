"""The sampling driver: one `lax.scan` over the timestep grid.

A solver is a pure step `(carry, t_cur, t_next) -> carry`; compile time therefore does not
grow with the number of steps.
"""

from typing import Callable

import flax.struct
import jax
import jax.numpy as jnp

from jvdm.errors import ConfigError


@flax.struct.dataclass
class SamplerCarry:
  x: jnp.ndarray  # [B, T, H, W, C], the current noisy video
  rng: jax.Array  # [B] keys, one per video, so a video does not depend on its batch-mates


def split_per_sample(keys: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Splits each of the `[B]` keys in two: (keys to carry on, keys to use now)."""
  pairs = jax.vmap(jax.random.split)(keys)
  return pairs[:, 0], pairs[:, 1]


def normal_per_sample(keys: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jnp.ndarray:
  """Standard normal `[B, *shape]`, row i drawn from keys[i]."""
  return jax.vmap(lambda key: jax.random.normal(key, shape, dtype))(keys)


Solver = Callable[[SamplerCarry, jnp.ndarray, jnp.ndarray], SamplerCarry]


def uniform_time_grid(num_steps: int, t_start: float = 1.0, t_end: float = 0.0) -> jnp.ndarray:
  """`num_steps + 1` times evenly spaced from `t_start` (noise) down to `t_end` (clean)."""
  if not isinstance(num_steps, int) or num_steps < 1:
    raise ConfigError(f"The number of sampling steps must be a positive integer, got {num_steps!r}.")
  return jnp.linspace(t_start, t_end, num_steps + 1)


def staggered_time_grid(num_steps: int, num_frames: int, stagger: float) -> jnp.ndarray:
  """`[num_steps + 1, num_frames]` per-frame times in which later frames lag behind earlier ones.

  The pyramid scheduling of Diffusion Forcing (Chen et al. 2024, sec. 3.4) with a continuous
  lag: over the sampling progress u in [0, 1], frame k descends linearly from t = 1 to 0 during
  [k * stagger / (T - 1), k * stagger / (T - 1) + 1 - stagger]. Each frame is then denoised
  next to cleaner earlier frames, which a model trained with per-frame noise levels (FVDM)
  uses to keep objects and motion consistent. A frame waiting at t = 1 or done at t = 0 takes
  steps from t to the same t. stagger = 0 is the uniform grid for every frame.
  """
  uniform_time_grid(num_steps)  # validates num_steps
  if not 0.0 <= stagger < 1.0:
    raise ConfigError(f"The frame stagger must be in [0, 1), got {stagger}.")
  progress = jnp.linspace(0.0, 1.0, num_steps + 1)[:, None]  # [S + 1, 1]
  start = stagger * jnp.arange(num_frames) / max(num_frames - 1, 1)  # [T]
  return jnp.clip(1.0 - (progress - start) / (1.0 - stagger), 0.0, 1.0)


def run_solver(solver: Solver, x_init: jnp.ndarray,
               time_grid: jnp.ndarray | tuple[jnp.ndarray, jnp.ndarray],
               rng: jax.Array) -> jnp.ndarray:
  """Runs `solver` from `x_init` over consecutive pairs of `time_grid`.

  Args:
    solver: a step `(carry, t_cur, t_next) -> carry`.
    x_init: the starting noise `[B, T, H, W, C]`.
    time_grid: `[S + 1, ...]`; each entry is a scalar, `[B]` or `[B, T]` time. Or a pair
      (t_cur `[S, ...]`, t_next `[S, ...]`) for grids whose steps do not chain (diffusers'
      DDIM with "linspace" spacing, see `jvdm.diffusion.discrete.ddim_time_pairs`).
    rng: `[B]` keys for stochastic solvers; split once per step inside the solver.

  Returns:
    The final `x`.
  """

  def body(carry, times):
    t_cur, t_next = times
    return solver(carry, t_cur, t_next), None

  if isinstance(time_grid, (tuple, list)):
    steps = tuple(time_grid)
  else:
    steps = (time_grid[:-1], time_grid[1:])
  carry, _ = jax.lax.scan(body, SamplerCarry(x=x_init, rng=rng), steps)
  return carry.x
