"""Noise schedules in continuous time, as log signal-to-noise ratio `logsnr(t)`.

t is in [0, 1]; t = 0 is clean data, t = 1 is (almost) pure noise. Any VP schedule is
then alpha^2 = sigmoid(logsnr), sigma^2 = sigmoid(-logsnr) (Kingma et al. 2021, VDM).
"""

import dataclasses
import math
from typing import Callable

import jax.numpy as jnp

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
          f"logsnr_min ({self.logsnr_min}) must be below logsnr_max ({self.logsnr_max}).")

  def __call__(self, t: jnp.ndarray) -> jnp.ndarray:
    angle_min = math.atan(math.exp(-0.5 * (self.logsnr_max - self.logsnr_shift)))
    angle_max = math.atan(math.exp(-0.5 * (self.logsnr_min - self.logsnr_shift)))
    angle = angle_min + t * (angle_max - angle_min)
    return self.logsnr_shift - 2.0 * jnp.log(jnp.tan(angle))


SCHEDULES: dict[str, Callable[..., Callable[[jnp.ndarray], jnp.ndarray]]] = {
    "cosine": CosineSchedule,
    "discrete": discrete_schedule,  # DDPM betas by name (jvdm.diffusion.discrete)
}


def get_schedule(name: str, **kwargs) -> Callable[[jnp.ndarray], jnp.ndarray]:
  """Returns the schedule `name` as a function t -> logsnr(t)."""
  if name not in SCHEDULES:
    raise ConfigError(f"Unknown schedule {name!r}; valid schedules: {sorted(SCHEDULES)}.")
  return SCHEDULES[name](**kwargs)
