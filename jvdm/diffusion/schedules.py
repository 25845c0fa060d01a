"""Noise schedules in continuous time, as log signal-to-noise ratio `logsnr(t)`.

t is in [0, 1]; t = 0 is clean data, t = 1 is (almost) pure noise. Any VP schedule is
then alpha^2 = sigmoid(logsnr), sigma^2 = sigmoid(-logsnr) (Kingma et al. 2021, VDM).
"""

import dataclasses
import math
from typing import Callable

import jax.numpy as jnp
import numpy as np

from jvdm.diffusion.discrete import discrete_schedule
from jvdm.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class CosineSchedule:
  """The cosine schedule (Nichol & Dhariwal 2021) written as logsnr(t) = -2 log tan(pi t / 2).

  The logsnr is clipped to [logsnr_min, logsnr_max] by rescaling t's angle range, as in
  simple diffusion (Hoogeboom et al. 2023, sec. 3.1), so both ends stay finite.

  `logsnr_shift` adds a constant to the logsnr (the shifted cosine schedule of simple diffusion,
  sec. 3.1: shift = 2 log(64 / resolution)). Negative values spend more of t at high noise,
  where a video's layout and motion are decided: many frames (or pixels) of redundant signal
  make a noise level easier than it is for one small image. The range stays
  [logsnr_min, logsnr_max].
  """

  logsnr_min: float = -15.0
  logsnr_max: float = 15.0
  logsnr_shift: float = 0.0

  def __post_init__(self):
    if not self.logsnr_min < self.logsnr_max:
      raise ConfigError(
        f"logsnr_min ({self.logsnr_min}) must be below logsnr_max ({self.logsnr_max})."
      )

  def _angle_range(self) -> tuple[float, float]:
    return (
      math.atan(math.exp(-0.5 * (self.logsnr_max - self.logsnr_shift))),
      math.atan(math.exp(-0.5 * (self.logsnr_min - self.logsnr_shift))),
    )

  def __call__(self, t: jnp.ndarray) -> jnp.ndarray:
    angle_min, angle_max = self._angle_range()
    angle = angle_min + t * (angle_max - angle_min)
    return self.logsnr_shift - 2.0 * jnp.log(jnp.tan(angle))

  def time_at_logsnr(self, logsnr) -> np.ndarray:
    """The inverse, in numpy float64 (logsnr outside the clipped range maps outside [0, 1])."""
    angle_min, angle_max = self._angle_range()
    angle = np.arctan(np.exp(0.5 * (self.logsnr_shift - np.asarray(logsnr, np.float64))))
    return (angle - angle_min) / (angle_max - angle_min)

  def noise_ratio_range(self) -> tuple[float, float]:
    return math.exp(-0.5 * self.logsnr_max), math.exp(-0.5 * self.logsnr_min)


@dataclasses.dataclass(frozen=True)
class InterpolatedCosineSchedule:
  """logsnr(t) = (1 - t) cosine_{shift_start}(t) + t cosine_{shift_end}(t).

  The interpolated schedule of simpler diffusion (Hoogeboom et al. 2024, SiD2, sec. 3.2):
  fine detail is set at low noise with the shift of a small resolution (`shift_start`, usually
  0), layout at high noise with the shift of the full resolution (`shift_end`).
  """

  logsnr_min: float = -15.0
  logsnr_max: float = 15.0
  shift_start: float = 0.0
  shift_end: float = -3.0

  def _ends(self):
    return (
      CosineSchedule(self.logsnr_min, self.logsnr_max, self.shift_start),
      CosineSchedule(self.logsnr_min, self.logsnr_max, self.shift_end),
    )

  def __call__(self, t: jnp.ndarray) -> jnp.ndarray:
    start, end = self._ends()
    return (1.0 - t) * start(t) + t * end(t)

  def time_at_logsnr(self, logsnr) -> np.ndarray:
    """The inverse by bisection (logsnr decreases in t), numpy float64."""
    logsnr = np.asarray(logsnr, np.float64)
    forward = lambda t: np.asarray(self(t.astype(np.float64)), np.float64)
    low, high = np.zeros_like(logsnr), np.ones_like(logsnr)
    for _ in range(60):
      mid = 0.5 * (low + high)
      above = forward(mid) > logsnr
      low, high = np.where(above, mid, low), np.where(above, high, mid)
    return np.where(
      logsnr >= self.logsnr_max, 0.0, np.where(logsnr <= self.logsnr_min, 1.0, 0.5 * (low + high))
    )

  def noise_ratio_range(self) -> tuple[float, float]:
    return math.exp(-0.5 * self.logsnr_max), math.exp(-0.5 * self.logsnr_min)


SCHEDULES: dict[str, Callable[..., Callable[[jnp.ndarray], jnp.ndarray]]] = {
  "cosine": CosineSchedule,
  "interpolated_cosine": InterpolatedCosineSchedule,
  "discrete": discrete_schedule,  # DDPM betas by name (jvdm.diffusion.discrete)
}


def get_schedule(name: str, **kwargs) -> Callable[[jnp.ndarray], jnp.ndarray]:
  """Returns the schedule `name` as a function t -> logsnr(t)."""
  if name not in SCHEDULES:
    raise ConfigError(f"Unknown schedule {name!r}; valid schedules: {sorted(SCHEDULES)}.")
  return SCHEDULES[name](**kwargs)
