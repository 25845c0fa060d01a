"""Rectified flow / flow matching: z = (1 - s) x + s eps (Liu et al. 2023; Lipman et al. 2023).

s is jvdm's time t after the timestep shift of SD3 (Esser et al. 2024, eq. 23) and Wan:
s = shift * t / (1 + (shift - 1) * t). shift > 1 spends more of the time range at high noise,
as larger images and longer videos need.
"""

import dataclasses

import jax.numpy as jnp
import numpy as np

from jvdm.diffusion.vp import float_time
from jvdm.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class FlowProcess:
  shift: float = 1.0

  def __post_init__(self):
    if not self.shift > 0:
      raise ConfigError(f"The flow timestep shift must be > 0, got {self.shift}.")

  def shifted(self, t):
    return self.shift * t / (1.0 + (self.shift - 1.0) * t)

  def alpha_sigma(self, t: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    s = self.shifted(float_time(t))
    return 1.0 - s, s

  def scale_model_input(self, z: jnp.ndarray, t: jnp.ndarray) -> jnp.ndarray:
    del t
    return z

  def time_at_noise_ratio(self, ratio) -> np.ndarray:
    ratio = np.asarray(ratio, np.float64)
    s = np.where(np.isinf(ratio), 1.0, ratio / (1.0 + np.where(np.isinf(ratio), 0.0, ratio)))
    return s / (self.shift - (self.shift - 1.0) * s)

  def noise_ratio_range(self) -> tuple[float, float]:
    raise ConfigError(
      "Karras sigmas need a finite largest noise level; the flow process reaches "
      "pure noise (sigma / alpha = inf) at t = 1. Use the 'flow' or 'uniform' "
      "spacing."
    )
