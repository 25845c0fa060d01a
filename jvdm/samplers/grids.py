"""Sampling time grids, including diffusers' timestep spacings, as jvdm times t in [0, 1].

diffusers spaces its steps over the training indices 0..N-1 of a DDPM schedule, with a rule of
its own per scheduler family; each rule below reproduces one (tested against diffusers 0.42's
numbers in tests/samplers/test_sampler_references.py):
  "ddim"      DDIMScheduler, DDPMScheduler: integer indices; index k steps to k - N // S.
  "euler"     Euler(Ancestral)Discrete, HeunDiscrete: fractional indices, sigma interpolated
              linearly between the training sigmas.
  "multistep" DPMSolverMultistep, UniPCMultistep: S of S + 1 evenly spaced integer indices;
              with the "flow" spacing, their `use_flow_sigmas` grid (Wan 2.1's UniPC): shifted
              flow sigmas of S of S + 1 points from 1 down to 1 / N, the first lowered by 1e-6.
  "lcm"       LCMScheduler: S of the 50 distillation indices.
  "flow"      FlowMatchEulerDiscrete: s from 1 down to shift(1 / N), before the shift.
Grids end at t = 0, clean data. An index k is the time (k + 1) / N (`index_to_time`); for a
process without training indices, N = 1000 of its own times. A noise level sigma / alpha = r
maps to t by the process's exact inverse (`time_at_noise_ratio`). "karras" spaces r as Karras
et al. 2022, eq. 5 (rho = 7) between the process's smallest and largest noise levels (for the
"euler" rule, between those of the spaced grid, as diffusers does; they coincide for linspace).
"""

import numpy as np

from jvdm.diffusion.discrete import (
  DiscreteSchedule,
  ddim_time_pairs,
  discrete_timesteps,
  index_to_time,
)
from jvdm.errors import ConfigError
from jvdm.samplers.driver import check_num_steps, check_time_power

SPACINGS = ("uniform", "linspace", "leading", "trailing", "karras")
GRID_RULES = ("ddim", "euler", "multistep", "lcm", "flow")
_RULE_SPACINGS = {
  "ddim": ("uniform", "linspace", "leading", "trailing"),
  "euler": SPACINGS,
  "multistep": SPACINGS + ("flow",),
  "lcm": ("uniform", "lcm"),
  "flow": ("uniform", "flow"),
}
# Every spacing name some rule takes (the config's `sample.spacing`).
ALL_SPACINGS = tuple(dict.fromkeys(s for spacings in _RULE_SPACINGS.values() for s in spacings))
DEFAULT_NUM_TRAIN_TIMESTEPS = 1000


def karras_noise_ratios(r_min: float, r_max: float, num_steps: int, rho: float = 7.0) -> np.ndarray:
  """`[S]` noise levels from r_max down to r_min, evenly spaced in r^(1 / rho)."""
  ramp = np.linspace(0.0, 1.0, num_steps)
  return (r_max ** (1 / rho) + ramp * (r_min ** (1 / rho) - r_max ** (1 / rho))) ** rho


def num_train_timesteps(process) -> int:
  schedule = getattr(process, "logsnr_fn", None)
  return (
    schedule.num_train_timesteps
    if isinstance(schedule, DiscreteSchedule)
    else (DEFAULT_NUM_TRAIN_TIMESTEPS)
  )


def training_noise_ratios(process, n: int) -> np.ndarray:
  """sigma / alpha at the n training indices (diffusers' `sigmas` before spacing)."""
  if isinstance(getattr(process, "logsnr_fn", None), DiscreteSchedule):
    alphas_cumprod = process.logsnr_fn.alphas_cumprod
    return np.sqrt((1.0 - alphas_cumprod) / alphas_cumprod)
  alpha, sigma = process.alpha_sigma(index_to_time(np.arange(n), n))
  with np.errstate(divide="ignore"):  # the flow process reaches alpha = 0
    return np.asarray(sigma, np.float64) / np.asarray(alpha, np.float64)


def _clean_end(times) -> np.ndarray:
  return np.concatenate([np.asarray(times, np.float64), [0.0]])


def _euler_indices(num_steps, n, spacing, steps_offset):
  if spacing in ("linspace", "karras"):
    return np.linspace(0, n - 1, num_steps)[::-1]
  if spacing == "leading":
    return (np.arange(num_steps) * (n // num_steps)).round()[::-1] + steps_offset
  return np.arange(n, 0, -n / num_steps).round() - 1.0


def _multistep_indices(num_steps, n, spacing, steps_offset):
  if spacing in ("linspace", "karras"):
    return np.linspace(0, n - 1, num_steps + 1).round()[::-1][:-1]
  if spacing == "leading":
    return (np.arange(num_steps + 1) * (n // (num_steps + 1))).round()[::-1][:-1] + steps_offset
  return np.arange(n, 0, -n / num_steps).round() - 1.0


def sampling_time_grid(
  process,
  rule: str,
  num_steps: int,
  spacing: str = "uniform",
  steps_offset: int = 0,
  lcm_original_steps: int = 50,
  time_power: float = 1.0,
  set_alpha_to_one: bool = True,
):
  """The grid of a sampler family: float64 `[S + 1]` times, or (t_cur, t_next) `[S]` pairs.

  Numpy, built once outside jit (samplers keep it as a constant).

  Args:
    process: the process the times belong to.
    rule: which diffusers family's rule (`GRID_RULES`).
    num_steps: S, the number of solver steps.
    spacing: "uniform" (S + 1 evenly spaced t from 1 to 0), "linspace" | "leading" |
      "trailing" (diffusers' `timestep_spacing`), "karras", "lcm" or "flow".
    steps_offset: diffusers' `steps_offset`, added to "leading" indices.
    lcm_original_steps: LCM's `original_inference_steps`.
    time_power: rho of the "uniform" spacing, t_i = (1 - i / S)^rho (see
      `staggered_time_grid`); 1 is uniform in t, and other spacings take only 1.
    set_alpha_to_one: DDIM's last step goes to alpha_bar = 1, t = 0 (True), or stops at
      alphas_cumprod[0] (diffusers' `set_alpha_to_one=False`, as Stable Diffusion's configs).
  """
  check_num_steps(num_steps)
  if rule not in GRID_RULES:
    raise ConfigError(f"Unknown grid rule {rule!r}; valid: {list(GRID_RULES)}.")
  if spacing not in _RULE_SPACINGS[rule]:
    raise ConfigError(
      f"Spacing {spacing!r} does not apply to the {rule!r} grid; valid: "
      f"{list(_RULE_SPACINGS[rule])}."
    )
  check_time_power(time_power)
  if not set_alpha_to_one and (rule != "ddim" or spacing == "uniform"):
    raise ConfigError(
      "set_alpha_to_one=False is DDIM's rule on diffusers' grids (spacing linspace, leading or "
      f"trailing); got the {rule!r} grid with spacing {spacing!r}."
    )
  if time_power != 1.0 and spacing != "uniform":
    raise ConfigError(
      f"time_power={time_power} warps the 'uniform' spacing; spacing "
      f"{spacing!r} has its own (use time_power=1)."
    )
  if spacing == "uniform":
    return np.linspace(1.0, 0.0, num_steps + 1) ** time_power
  n = num_train_timesteps(process)
  if num_steps > n:
    raise ConfigError(f"{num_steps} steps exceed the {n} training timesteps of the schedule.")
  if rule == "ddim":
    indices = discrete_timesteps(num_steps, n, spacing, steps_offset)
    return ddim_time_pairs(indices, n, set_alpha_to_one=set_alpha_to_one)
  if rule == "lcm":
    if not 1 <= num_steps <= lcm_original_steps <= n:
      raise ConfigError(
        f"LCM needs 1 <= steps ({num_steps}) <= original steps ({lcm_original_steps}) <= {n}."
      )
    origin = (np.arange(1, lcm_original_steps + 1) * (n // lcm_original_steps) - 1)[::-1]
    chosen = np.floor(np.linspace(0, len(origin), num_steps, endpoint=False)).astype(np.int64)
    return _clean_end(index_to_time(origin[chosen], n))
  if rule == "flow":
    if not hasattr(process, "shifted"):
      raise ConfigError(
        "The 'flow' spacing needs the flow process (config.diffusion.process='flow')."
      )
    start = 1.0 / n
    return _clean_end(np.linspace(1.0, process.shifted(start), num_steps))
  if rule == "multistep" and spacing == "flow":
    if not hasattr(process, "shifted"):
      raise ConfigError(
        "The 'flow' spacing needs the flow process (config.diffusion.process='flow')."
      )
    sigmas = process.shifted(np.linspace(1.0, 1.0 / n, num_steps + 1)[:-1])
    if abs(sigmas[0] - 1.0) < 1e-6:  # diffusers: keeps log(alpha) finite at the first step
      sigmas[0] -= 1e-6
    return _clean_end(process.time_at_noise_ratio(sigmas / (1.0 - sigmas)))
  table = training_noise_ratios(process, n)
  if rule == "euler":
    ratios = np.interp(_euler_indices(num_steps, n, spacing, steps_offset), np.arange(n), table)
    if spacing == "karras":
      ratios = karras_noise_ratios(ratios[-1], ratios[0], num_steps)
    return _clean_end(process.time_at_noise_ratio(ratios))
  if spacing == "karras":  # multistep: over the whole training range
    return _clean_end(
      process.time_at_noise_ratio(karras_noise_ratios(*process.noise_ratio_range(), num_steps))
    )
  return _clean_end(index_to_time(_multistep_indices(num_steps, n, spacing, steps_offset), n))
