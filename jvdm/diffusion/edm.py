"""EDM's variance-exploding process in sigma (Karras et al. 2022): z = x + sigma eps.

jvdm's time t in [0, 1] maps onto sigma by sigma(t) = sigma_max * t^rho, so t = 0 is clean
data and a uniform grid in t from 1 to t(sigma_min), followed by t = 0, is exactly the
sampling grid of Karras et al. 2022, eq. 5 (rho = 7).
"""

import dataclasses

import jax.numpy as jnp
import numpy as np

from jvdm.diffusion.parameterization import SIGMA_DATA
from jvdm.diffusion.vp import broadcast_to_video, float_time
from jvdm.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class EDMProcess:
  sigma_min: float = 0.002
  sigma_max: float = 80.0
  rho: float = 7.0

  def __post_init__(self):
    if not 0 < self.sigma_min < self.sigma_max:
      raise ConfigError(
        f"EDM needs 0 < sigma_min < sigma_max, got sigma_min={self.sigma_min}, "
        f"sigma_max={self.sigma_max}."
      )
    if not self.rho > 0:
      raise ConfigError(f"EDM's rho must be > 0, got {self.rho}.")

  def alpha_sigma(self, t: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    t = float_time(t)
    return jnp.ones_like(t), self.sigma_max * t**self.rho

  def scale_model_input(self, z: jnp.ndarray, t: jnp.ndarray) -> jnp.ndarray:
    """c_in = 1 / sqrt(sigma^2 + sigma_data^2) (Karras et al. 2022, Table 1)."""
    _, sigma = self.alpha_sigma(t)
    return z / jnp.sqrt(broadcast_to_video(sigma, z) ** 2 + SIGMA_DATA**2)

  def time_at_noise_ratio(self, ratio) -> np.ndarray:
    return (np.asarray(ratio, np.float64) / self.sigma_max) ** (1.0 / self.rho)

  def noise_ratio_range(self) -> tuple[float, float]:
    return self.sigma_min, self.sigma_max
