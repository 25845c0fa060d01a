"""Discrete-time VP schedules (DDPM betas) placed on jvdm's continuous time.

A DDPM-style model is trained on N indices i = 0 .. N-1 with alphas_cumprod[i]
(Ho et al. 2020). jvdm's time is continuous, t in [0, 1] with 0 clean, so index i sits at
t = (i + 1) / N and t = 0 is the clean data (alpha_bar = 1). Between these knots alpha_bar is
interpolated linearly, which makes every discrete grid a special case of the continuous one:
the samplers need no discrete code path.

Beta schedules and timestep spacings follow the names (and numbers) of diffusers'
schedulers, so a model trained there samples here on the same grid.
"""

import dataclasses
import math

import jax.numpy as jnp
import numpy as np

from jvdm.errors import ConfigError

BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
TIMESTEP_SPACINGS = ("leading", "trailing", "linspace")


def make_betas(
  name: str, num_train_timesteps: int = 1000, beta_start: float = 0.0001, beta_end: float = 0.02
) -> np.ndarray:
  """float64 `[N]` betas of the named schedule.

  linear: DDPM (Ho et al. 2020). scaled_linear: linear in sqrt(beta) (Stable Diffusion).
  squaredcos_cap_v2: alpha_bar(s) = cos((s + 0.008) / 1.008 * pi / 2)^2 with betas capped at
  0.999 (Nichol & Dhariwal 2021, eq. 17).
  """
  if name not in BETA_SCHEDULES:
    raise ConfigError(f"Unknown beta schedule {name!r}; valid: {list(BETA_SCHEDULES)}.")
  if not isinstance(num_train_timesteps, int) or num_train_timesteps < 2:
    raise ConfigError(f"num_train_timesteps must be an integer >= 2, got {num_train_timesteps!r}.")
  n = num_train_timesteps
  if name == "linear":
    return np.linspace(beta_start, beta_end, n, dtype=np.float64)
  if name == "scaled_linear":
    return np.linspace(beta_start**0.5, beta_end**0.5, n, dtype=np.float64) ** 2
  alpha_bar = lambda s: math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2
  return np.array(
    [min(1 - alpha_bar((i + 1) / n) / alpha_bar(i / n), 0.999) for i in range(n)], np.float64
  )


def rescale_zero_terminal_snr(betas: np.ndarray) -> np.ndarray:
  """Shifts and scales sqrt(alpha_bar) so the last index has SNR exactly 0 and the first keeps
  its value (Lin et al. 2024, "Common Diffusion Noise Schedules and Sample Steps are Flawed",
  Algorithm 1)."""
  sqrt_alpha_bar = np.sqrt(np.cumprod(1.0 - np.asarray(betas, np.float64)))
  first, last = sqrt_alpha_bar[0], sqrt_alpha_bar[-1]
  sqrt_alpha_bar = (sqrt_alpha_bar - last) * first / (first - last)
  alpha_bar = sqrt_alpha_bar**2
  alphas = np.concatenate([alpha_bar[:1], alpha_bar[1:] / alpha_bar[:-1]])
  return 1.0 - alphas


@dataclasses.dataclass(frozen=True, eq=False)
class DiscreteSchedule:
  """logsnr(t) of a discrete schedule: alpha_bar interpolated linearly between the knots
  t = 0 (alpha_bar = 1) and t = (i + 1) / N (alphas_cumprod[i])."""

  alphas_cumprod: np.ndarray  # float64 [N]

  def __post_init__(self):
    alphas_cumprod = np.asarray(self.alphas_cumprod, np.float64)
    if alphas_cumprod.ndim != 1 or len(alphas_cumprod) < 2:
      raise ConfigError(
        f"alphas_cumprod must be a 1-D array of at least 2 values, got shape "
        f"{alphas_cumprod.shape}."
      )
    if not (
      np.all(np.diff(alphas_cumprod) <= 0) and 0 <= alphas_cumprod[-1] and alphas_cumprod[0] <= 1
    ):
      raise ConfigError("alphas_cumprod must decrease within [0, 1].")
    object.__setattr__(self, "alphas_cumprod", alphas_cumprod)

  @property
  def num_train_timesteps(self) -> int:
    return len(self.alphas_cumprod)

  def alpha_bar(self, t: jnp.ndarray) -> jnp.ndarray:
    t = jnp.asarray(t)
    knots = np.concatenate([[1.0], self.alphas_cumprod])
    dtype = jnp.result_type(t, jnp.float32)
    return jnp.interp(
      t * self.num_train_timesteps, jnp.arange(len(knots), dtype=dtype), jnp.asarray(knots, dtype)
    )

  def __call__(self, t: jnp.ndarray) -> jnp.ndarray:
    alpha_bar = self.alpha_bar(t)
    return jnp.log(alpha_bar) - jnp.log1p(-alpha_bar)  # +inf at t = 0, -inf at zero SNR

  def time_at_logsnr(self, logsnr) -> np.ndarray:
    """The exact inverse of the interpolation, numpy float64."""
    alpha_bar = 1.0 / (1.0 + np.exp(-np.asarray(logsnr, np.float64)))
    knots = np.concatenate([[1.0], self.alphas_cumprod])
    index = np.interp(alpha_bar, knots[::-1], np.arange(len(knots), dtype=np.float64)[::-1])
    return index / self.num_train_timesteps

  def noise_ratio_range(self) -> tuple[float, float]:
    """sigma / alpha at the first and last training index (diffusers' sigmas[0], sigmas[-1])."""
    sigmas = np.sqrt((1.0 - self.alphas_cumprod) / self.alphas_cumprod)
    return float(sigmas[0]), float(sigmas[-1])


def index_to_time(index, num_train_timesteps: int):
  """Continuous t of DDPM index `index` (negative: the clean data at t = 0)."""
  return np.maximum(np.asarray(index, np.float64) + 1.0, 0.0) / num_train_timesteps


def discrete_timesteps(
  num_inference_steps: int,
  num_train_timesteps: int = 1000,
  spacing: str = "leading",
  steps_offset: int = 0,
) -> np.ndarray:
  """int64 `[S]` indices from noisy to clean, as diffusers' `set_timesteps` spaces them.

  leading: multiples of N // S, plus `steps_offset` (DDIM, Song et al. 2021; SD 1.x).
  trailing: counted back from the last index by N / S, so the first step starts at pure noise
  (Lin et al. 2024, sec. 3.3). linspace: S evenly spaced indices from N - 1 to 0.
  """
  if spacing not in TIMESTEP_SPACINGS:
    raise ConfigError(f"Unknown timestep spacing {spacing!r}; valid: {list(TIMESTEP_SPACINGS)}.")
  if (
    not isinstance(num_inference_steps, int) or not 1 <= num_inference_steps <= num_train_timesteps
  ):
    raise ConfigError(
      f"The number of steps must be an integer in [1, {num_train_timesteps}], "
      f"got {num_inference_steps!r}."
    )
  n, s = num_train_timesteps, num_inference_steps
  if spacing == "leading":
    return (np.arange(s) * (n // s)).round()[::-1].astype(np.int64) + steps_offset
  if spacing == "trailing":
    return np.round(np.arange(n, 0, -n / s)).astype(np.int64) - 1
  return np.linspace(0, n - 1, s).round()[::-1].astype(np.int64)


def ddim_time_pairs(
  timesteps: np.ndarray, num_train_timesteps: int = 1000, set_alpha_to_one: bool = True
) -> tuple[np.ndarray, np.ndarray]:
  """float64 (t_cur [S], t_next [S]) of diffusers' DDIM steps over `timesteps`.

  diffusers' `DDIMScheduler.step` goes from index k to k - N // S whatever the spacing, so with
  "linspace" spacing it does not land on the next listed index (999 -> 899, then 888 -> 788).
  Past index 0 it lands on alpha_bar = 1 (`set_alpha_to_one`, t = 0) or on alphas_cumprod[0].
  """
  timesteps = np.asarray(timesteps, np.int64)
  previous = timesteps - num_train_timesteps // len(timesteps)
  final = -1 if set_alpha_to_one else 0
  t_next = index_to_time(np.where(previous >= 0, previous, final), num_train_timesteps)
  return index_to_time(timesteps, num_train_timesteps), t_next


def discrete_schedule(
  beta_schedule: str = "linear",
  num_train_timesteps: int = 1000,
  beta_start: float = 0.0001,
  beta_end: float = 0.02,
  rescale_zero_snr: bool = False,
) -> DiscreteSchedule:
  """The `DiscreteSchedule` of a named beta schedule (`config.diffusion.discrete`)."""
  betas = make_betas(beta_schedule, num_train_timesteps, beta_start, beta_end)
  if rescale_zero_snr:
    betas = rescale_zero_terminal_snr(betas)
  return DiscreteSchedule(np.cumprod(1.0 - betas))
